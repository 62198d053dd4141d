// concurrencyGate against real Express apps (5 and 4) over real sockets: slots come back on every
// way a response ends, queued clients that leave are dropped, per-key gates vanish when idle,
// refusals are 503s in the OpenAI shape, and no timer is left behind (fake timers throughout).
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import request from 'supertest';
import type { NextFunction, Request, Response } from 'express';
import { getContext } from '../lib/context.js';
import { errors, sendError, toLlmuxError } from '../lib/index.js';
import {
  concurrencyGate,
  type ConcurrencyGate,
  type ConcurrencyGateOptions,
} from '../lib/middleware/concurrency-gate.js';
import { expressVersions } from './support/express-versions.js';
import { listen, waitFor } from './support/http.js';

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Set when the connection was cut before the response completed. */
  networkError: string | undefined;
}

/** A request in flight over its own connection. */
interface Call {
  response: Promise<RawResponse>;
  /** Destroys the client's socket, as a client that gives up does. */
  abort(): void;
}

/** How long a test waits for an answer before calling it a hang (lib bugs must fail fast). */
const ANSWER_TIMEOUT_MS = 3000;

/** A GET over a fresh connection; `abortOnFirstByte` leaves as soon as the body starts. */
function call(
  port: number,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
  abortOnFirstByte = false,
): Call {
  const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false, timeout: ANSWER_TIMEOUT_MS });
  const response = new Promise<RawResponse>((resolve) => {
    // Socket timeouts run on Node's internal timers, which jest does not fake.
    req.on('timeout', () => {
      resolve({ status: 0, headers: {}, body: '', networkError: 'timeout' });
      req.destroy();
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ status: 0, headers: {}, body: '', networkError: err.code ?? err.message }),
    );
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      const answer = (networkError: string | undefined) =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString('utf8'),
          networkError,
        });
      res.on('data', (chunk: Buffer) => {
        parts.push(chunk);
        if (abortOnFirstByte) req.destroy();
      });
      res.on('end', () => answer(undefined));
      res.on('close', () => answer('aborted'));
    });
  });
  return { response, abort: () => req.destroy() };
}

/** Responses held open by `/hold` until the test ends them, oldest first. */
function holdingRoute() {
  const held: Response[] = [];
  const arrivals: string[] = [];
  const handler = (req: Request, res: Response) => {
    arrivals.push(String(req.headers['x-name'] ?? ''));
    held.push(res);
  };
  const finishOldest = (body = 'done') => held.shift()!.end(body);
  return { held, arrivals, handler, finishOldest };
}

/** The error handler a host would mount: llmux errors as they are, anything else a 500. */
function errorHandler(err: unknown, _req: Request, res: Response, _next: NextFunction) {
  sendError(res, toLlmuxError(err));
}

const stats = (gate: ConcurrencyGate) => gate.stats();

beforeEach(() => {
  // setImmediate and nextTick stay real: Express and the sockets need them to make progress.
  jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
});

afterEach(() => {
  expect(jest.getTimerCount()).toBe(0);
  jest.useRealTimers();
});

describe.each(expressVersions)('concurrencyGate on %s', (_label, express) => {
  function gatedApp(options: ConcurrencyGateOptions) {
    const gate = concurrencyGate(options);
    const hold = holdingRoute();
    const app = express();
    app.get('/hold', gate, hold.handler);
    app.get('/ok', gate, (_req: Request, res: Response) => {
      res.json({ gateWaitMs: getContext(res)?.gateWaitMs });
    });
    app.get('/throw', gate, () => {
      throw new Error('handler bug');
    });
    app.get('/upstream-error', gate, (_req: Request, _res: Response, next: NextFunction) => {
      setImmediate(() => next(errors.upstreamTimeout('first byte')));
    });
    app.get('/stream', gate, (_req: Request, res: Response) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: {"choices":[]}\n\n');
      // never ends: only the client leaving finishes this response
    });
    app.use(errorHandler);
    return { gate, hold, app };
  }

  it('lets max requests through, queues the rest and returns every permit after success', async () => {
    const { gate, hold, app } = gatedApp({ max: 2, maxQueue: 10 });
    const server = await listen(app);
    try {
      const calls = Array.from({ length: 6 }, () => call(server.port, '/hold'));
      await waitFor(() => stats(gate).inFlight === 2 && stats(gate).queued === 4, {
        what: 'two through, four queued',
      });
      expect(hold.held).toHaveLength(2);
      for (let finished = 0; finished < 6; finished++) {
        await waitFor(() => hold.held.length > 0, { what: 'a held response' });
        expect(stats(gate).inFlight).toBeLessThanOrEqual(2);
        hold.finishOldest();
      }
      const responses = await Promise.all(calls.map((c) => c.response));
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      await waitFor(() => stats(gate).inFlight === 0, { what: 'all permits back' });
      expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
    } finally {
      await server.close();
    }
  });

  it('admits queued requests in the order they arrived', async () => {
    const { gate, hold, app } = gatedApp({ max: 1, maxQueue: 10 });
    const server = await listen(app);
    try {
      const calls = [call(server.port, '/hold', { 'x-name': 'first' })];
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      for (const [index, name] of ['b', 'c', 'd', 'e'].entries()) {
        calls.push(call(server.port, '/hold', { 'x-name': name }));
        await waitFor(() => stats(gate).queued === index + 1, { what: `${name} queued` });
      }
      for (let i = 0; i < 5; i++) {
        await waitFor(() => hold.held.length === 1, { what: 'the next request admitted' });
        hold.finishOldest();
      }
      await Promise.all(calls.map((c) => c.response));
      expect(hold.arrivals).toEqual(['first', 'b', 'c', 'd', 'e']);
    } finally {
      await server.close();
    }
  });

  it('returns the permit after a later handler throws', async () => {
    const { gate, app } = gatedApp({ max: 1 });
    const server = await listen(app);
    try {
      const res = await request(server.url).get('/throw');
      expect(res.status).toBe(500);
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back' });
      expect((await request(server.url).get('/ok')).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('returns the permit after an upstream error reaches the error handler', async () => {
    const { gate, app } = gatedApp({ max: 1 });
    const server = await listen(app);
    try {
      const res = await request(server.url).get('/upstream-error');
      expect(res.status).toBe(504);
      expect(res.body.error.code).toBe('upstream_timeout');
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back' });
    } finally {
      await server.close();
    }
  });

  it('returns the permit when the client aborts in the middle of the response', async () => {
    const { gate, app } = gatedApp({ max: 1 });
    const server = await listen(app);
    try {
      const streaming = call(server.port, '/stream', {}, true);
      const answer = await streaming.response;
      expect(answer.networkError).toBe('aborted');
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back after the client left' });
      expect((await request(server.url).get('/ok')).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('drops a queued client that disconnects, at once and without running the handler', async () => {
    const { gate, hold, app } = gatedApp({ max: 1 });
    const server = await listen(app);
    try {
      const first = call(server.port, '/hold', { 'x-name': 'holder' });
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      const leaver = call(server.port, '/hold', { 'x-name': 'leaver' });
      await waitFor(() => stats(gate).queued === 1, { what: 'the second request queued' });
      leaver.abort();
      await waitFor(() => stats(gate).queued === 0, { what: 'the leaver dropped from the queue' });
      expect(stats(gate).inFlight).toBe(1);
      hold.finishOldest();
      expect((await first.response).status).toBe(200);
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back' });
      expect(hold.arrivals).toEqual(['holder']);
    } finally {
      await server.close();
    }
  });

  it('spends no slot on a client that left before reaching the gate', async () => {
    const gate = concurrencyGate({ max: 1 });
    let arrived = false;
    let reachedGate = false;
    const handler = jest.fn((_req: Request, res: Response) => res.end());
    const app = express();
    // A slow earlier middleware (a body reader) that only moves on once the client is gone.
    app.get(
      '/',
      (_req: Request, res: Response, next: NextFunction) => {
        arrived = true;
        res.once('close', () => {
          reachedGate = true;
          next();
        });
      },
      gate,
      handler,
    );
    const server = await listen(app);
    try {
      const leaver = call(server.port, '/');
      await waitFor(() => arrived, { what: 'the request arrived' });
      leaver.abort();
      await waitFor(() => reachedGate, { what: 'the gate reached' });
      expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
      expect(handler).not.toHaveBeenCalled();
    } finally {
      await server.close();
    }
  });

  it('answers a full queue with 503 queue_full in the OpenAI shape with Retry-After', async () => {
    const { gate, hold, app } = gatedApp({ max: 1, maxQueue: 0 });
    const server = await listen(app);
    try {
      const holder = call(server.port, '/hold');
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      const res = await request(server.url).get('/ok');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(res.body).toEqual({
        error: { message: expect.any(String), type: 'overloaded_error', code: 'queue_full', param: null },
      });
      hold.finishOldest();
      await holder.response;
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back' });
    } finally {
      await server.close();
    }
  });

  it('answers 503 queue_timeout with Retry-After after queueTimeoutMs, leaving no timer', async () => {
    const { gate, hold, app } = gatedApp({ max: 1, queueTimeoutMs: 5_000 });
    const server = await listen(app);
    try {
      const holder = call(server.port, '/hold');
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      const waiting = call(server.port, '/ok');
      await waitFor(() => stats(gate).queued === 1, { what: 'queued' });
      expect(jest.getTimerCount()).toBe(1);
      jest.advanceTimersByTime(4_999);
      expect(stats(gate).queued).toBe(1);
      jest.advanceTimersByTime(1);
      expect(stats(gate).queued).toBe(0);
      const answer = await waiting.response;
      expect(answer.status).toBe(503);
      expect(Number(answer.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(answer.body).error).toMatchObject({
        type: 'overloaded_error',
        code: 'queue_timeout',
      });
      expect(jest.getTimerCount()).toBe(0);
      hold.finishOldest();
      await holder.response;
      await waitFor(() => stats(gate).inFlight === 0, { what: 'permit back' });
    } finally {
      await server.close();
    }
  });

  it('writes the queue wait into the request context', async () => {
    let now = 10_000;
    const { gate, hold, app } = gatedApp({ max: 1, clock: () => now });
    const server = await listen(app);
    try {
      const holder = call(server.port, '/hold');
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      const waiting = call(server.port, '/ok');
      await waitFor(() => stats(gate).queued === 1, { what: 'queued' });
      now += 250;
      hold.finishOldest();
      expect(JSON.parse((await waiting.response).body)).toEqual({ gateWaitMs: 250 });
      await holder.response;
      expect((await request(server.url).get('/ok')).body).toEqual({ gateWaitMs: 0 });
    } finally {
      await server.close();
    }
  });

  describe('with a key', () => {
    const byTeam = (req: http.IncomingMessage) => String(req.headers['x-team']);

    it('gives each key its own gate and drops it as soon as it is idle', async () => {
      const { gate, hold, app } = gatedApp({ max: 1, key: byTeam });
      const server = await listen(app);
      try {
        const a1 = call(server.port, '/hold', { 'x-team': 'a' });
        const b1 = call(server.port, '/hold', { 'x-team': 'b' });
        await waitFor(() => stats(gate).inFlight === 2, { what: 'a and b through' });
        const a2 = call(server.port, '/hold', { 'x-team': 'a' });
        await waitFor(() => stats(gate).queued === 1, { what: 'the second a queued' });
        expect(stats(gate)).toEqual({ inFlight: 2, queued: 1, keys: 2 });
        expect(gate.stats('a')).toEqual({ inFlight: 1, queued: 1, keys: 1 });
        expect(gate.stats('b')).toEqual({ inFlight: 1, queued: 0, keys: 1 });
        expect(gate.stats('c')).toEqual({ inFlight: 0, queued: 0, keys: 0 });
        // c is not held up by a's queue
        expect((await request(server.url).get('/ok').set('x-team', 'c')).status).toBe(200);
        while (hold.held.length > 0 || stats(gate).queued > 0) {
          await waitFor(() => hold.held.length > 0, { what: 'a held response' });
          hold.finishOldest();
        }
        await Promise.all([a1.response, b1.response, a2.response]);
        await waitFor(() => stats(gate).keys === 0, { what: 'every key dropped' });
        expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
      } finally {
        await server.close();
      }
    });

    it('drops a key whose only waiter timed out once its holder ends', async () => {
      const { gate, hold, app } = gatedApp({ max: 1, key: byTeam, queueTimeoutMs: 1_000 });
      const server = await listen(app);
      try {
        const holder = call(server.port, '/hold', { 'x-team': 'a' });
        await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
        const waiting = call(server.port, '/ok', { 'x-team': 'a' });
        await waitFor(() => stats(gate).queued === 1, { what: 'queued' });
        jest.advanceTimersByTime(1_000);
        expect((await waiting.response).status).toBe(503);
        expect(stats(gate).keys).toBe(1);
        hold.finishOldest();
        await holder.response;
        await waitFor(() => stats(gate).keys === 0, { what: 'the key dropped' });
      } finally {
        await server.close();
      }
    });

    it('refuses a new key past maxKeys with 503 overloaded', async () => {
      const { gate, hold, app } = gatedApp({ max: 1, key: byTeam, maxKeys: 1 });
      const server = await listen(app);
      try {
        const holder = call(server.port, '/hold', { 'x-team': 'a' });
        await waitFor(() => stats(gate).keys === 1, { what: 'the key gate made' });
        const res = await request(server.url).get('/ok').set('x-team', 'b');
        expect(res.status).toBe(503);
        expect(res.headers['retry-after']).toBe('1');
        expect(res.body.error).toMatchObject({ type: 'overloaded_error', code: 'overloaded' });
        hold.finishOldest();
        await holder.response;
        await waitFor(() => stats(gate).keys === 0, { what: 'the key dropped' });
        expect((await request(server.url).get('/ok').set('x-team', 'b')).status).toBe(200);
      } finally {
        await server.close();
      }
    });

    it('passes a throwing key function to the error handler and takes no slot', async () => {
      const { gate, app } = gatedApp({
        max: 1,
        key: () => {
          throw new Error('no key');
        },
      });
      const server = await listen(app);
      try {
        const res = await request(server.url).get('/ok');
        expect(res.status).toBe(500);
        expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
      } finally {
        await server.close();
      }
    });
  });

  it('close() answers waiters and newcomers with 503 gate_closed, lets running requests end, and is idempotent', async () => {
    const { gate, hold, app } = gatedApp({ max: 1, key: () => 'all' });
    const server = await listen(app);
    try {
      const holder = call(server.port, '/hold');
      await waitFor(() => stats(gate).inFlight === 1, { what: 'one request through' });
      const waiting = call(server.port, '/ok');
      await waitFor(() => stats(gate).queued === 1, { what: 'queued' });
      await Promise.all([gate.close(), gate.close()]);
      await gate.close();
      const answer = await waiting.response;
      expect(answer.status).toBe(503);
      expect(answer.headers['retry-after']).toBe('1');
      expect(JSON.parse(answer.body).error).toMatchObject({ type: 'overloaded_error', code: 'gate_closed' });
      const late = await request(server.url).get('/ok');
      expect(late.status).toBe(503);
      expect(late.body.error.code).toBe('gate_closed');
      hold.finishOldest();
      expect((await holder.response).status).toBe(200);
      await waitFor(() => stats(gate).keys === 0, { what: 'the last key dropped' });
      expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
    } finally {
      await server.close();
    }
  });
});

describe('concurrencyGate options', () => {
  it.each([
    [{ max: 0 }, 'concurrencyGate: max must be a positive integer, got 0'],
    [{ max: -1 }, 'concurrencyGate: max must be a positive integer, got -1'],
    [{ max: '4' }, 'concurrencyGate: max must be a positive integer, got "4"'],
    [{ max: 1, maxQueue: 0.5 }, 'concurrencyGate: maxQueue must be a non-negative integer, got 0.5'],
    [{ max: 1, queueTimeoutMs: -5 }, 'concurrencyGate: queueTimeoutMs must be a positive integer'],
    [{ max: 1, maxKeys: 0 }, 'concurrencyGate: maxKeys must be a positive integer, got 0'],
    [{ max: 1, key: 'team' }, 'concurrencyGate: key must be a function, got "team"'],
    [{ max: 1, clock: 1 }, 'concurrencyGate: clock must be a function, got 1'],
  ])('refuses %p at construction', (options, message) => {
    expect(() => concurrencyGate(options as never)).toThrow(TypeError);
    expect(() => concurrencyGate(options as never)).toThrow(message);
  });

  it('refuses missing options', () => {
    expect(() => concurrencyGate(undefined as never)).toThrow('concurrencyGate: options are required');
  });
});

describe('concurrencyGate hand-off race', () => {
  /** Just enough of a ServerResponse to drive the gate by hand, tick by tick. */
  class FakeResponse extends EventEmitter {
    closed = false;
    headersSent = false;
    destroyed = false;
    locals: Record<string, unknown> = {};
    setHeader(): void {}
    /** The response ends or the client leaves: `closed` first, then 'close', as Node does. */
    close(): void {
      this.closed = true;
      this.emit('close');
    }
  }
  const fakeRequest = () => ({ headers: {} }) as http.IncomingMessage;
  const enter = (gate: ConcurrencyGate) => {
    const res = new FakeResponse();
    const next = jest.fn();
    gate(fakeRequest(), res as unknown as http.ServerResponse, next);
    return { res, next };
  };
  const settle = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it('passes a slot handed to a client that left in the same tick on to the next waiter', async () => {
    const gate = concurrencyGate({ max: 1 });
    const a = enter(gate);
    const b = enter(gate);
    const c = enter(gate);
    expect(a.next).toHaveBeenCalledTimes(1);
    expect(stats(gate)).toEqual({ inFlight: 1, queued: 2, keys: 0 });
    a.res.close(); // A ends: its slot is handed to B
    b.res.close(); // B's client leaves in the same tick, after the hand-off
    await settle();
    expect(b.next).not.toHaveBeenCalled();
    expect(c.next).toHaveBeenCalledTimes(1);
    expect(stats(gate)).toEqual({ inFlight: 1, queued: 0, keys: 0 });
    c.res.close();
    c.res.close();
    expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
  });

  it('drops the key of a slot handed to a client that left, when nobody else waits', async () => {
    const gate = concurrencyGate({ max: 1, key: () => 'k' });
    const a = enter(gate);
    const b = enter(gate);
    a.res.close();
    b.res.close();
    await settle();
    expect(b.next).not.toHaveBeenCalled();
    expect(stats(gate)).toEqual({ inFlight: 0, queued: 0, keys: 0 });
  });
});
