// Server hardening and graceful shutdown, against real http servers on 127.0.0.1 and real clients
// (node:net for byte-level control, http.request otherwise).
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import http from 'node:http';
import net from 'node:net';
import { createServer, hardenServer, shutdown, type Closable, type ShutdownResult } from '../lib/server.js';
import {
  listen,
  settleOnFakeClock,
  waitFor,
  watchResources,
  type ResourceWatch,
  type SettledOnFakeClock,
} from './support/http.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  socket: net.Socket;
}

const servers: http.Server[] = [];

afterEach(async () => {
  // Idempotent: a test that already shut its server down gets the stored promise back.
  await Promise.all(servers.splice(0).map((server) => shutdown(server, [], { timeoutMs: 0 })));
});

/** Registers `server` for cleanup and returns it. */
function track(server: http.Server): http.Server {
  servers.push(server);
  return server;
}

function get(port: number, path: string, options: http.RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, ...options }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      const { statusCode, headers, socket } = response;
      response.on('end', () => resolve({ status: statusCode ?? 0, headers, body, socket }));
    });
    request.on('error', reject);
  });
}

function closed(emitter: { once(event: 'close', listener: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

/** A promise with its resolver, to learn that a handler has been reached. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((settle) => (resolve = settle));
  return { promise, resolve };
}

const okHandler: http.RequestListener = (_request, response) => {
  response.end('ok');
};

/** Closables that log their calls; `fails` ones throw (sync) or reject (async). */
function closable(name: string, log: string[], fails?: 'throw' | 'reject'): Closable & { error: Error } {
  const error = new Error(`${name} failed`);
  return {
    error,
    close() {
      log.push(name);
      if (fails === 'throw') throw error;
      if (fails === 'reject') return Promise.reject(error);
      return Promise.resolve();
    },
  };
}

function expectTypeError(run: () => unknown, message: string): void {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TypeError);
  expect((thrown as TypeError).message).toContain(message);
}

describe('hardenServer', () => {
  it('sets the documented defaults and returns the same server', () => {
    const server = new http.Server();
    expect(hardenServer(server)).toBe(server);
    expect(server.headersTimeout).toBe(10_000);
    expect(server.requestTimeout).toBe(60_000);
    expect(server.keepAliveTimeout).toBe(65_000);
    expect((server as http.Server & { maxHeaderSize?: number }).maxHeaderSize).toBe(16_384);
    expect(server.maxRequestsPerSocket).toBe(0);
    expect(server.timeout).toBe(0);
  });

  it('applies the given options', () => {
    const server = hardenServer(new http.Server(), {
      headersTimeoutMs: 5_000,
      requestTimeoutMs: 0,
      keepAliveTimeoutMs: 75_000,
      maxHeaderSizeBytes: 8_192,
      maxRequestsPerSocket: 100,
      socketIdleTimeoutMs: 120_000,
    });
    expect(server.headersTimeout).toBe(5_000);
    expect(server.requestTimeout).toBe(0);
    expect(server.keepAliveTimeout).toBe(75_000);
    expect((server as http.Server & { maxHeaderSize?: number }).maxHeaderSize).toBe(8_192);
    expect(server.maxRequestsPerSocket).toBe(100);
    expect(server.timeout).toBe(120_000);
  });

  it.each([
    [{ headersTimeoutMs: 0 }, 'hardenServer: headersTimeoutMs must be a positive integer, got 0'],
    [{ headersTimeoutMs: 2 ** 31 }, 'hardenServer: headersTimeoutMs must be at most 2147483647'],
    [{ requestTimeoutMs: 5_000 }, 'hardenServer: requestTimeoutMs must be 0 or at least headersTimeoutMs'],
    [{ requestTimeoutMs: -1 }, 'hardenServer: requestTimeoutMs must be a non-negative integer, got -1'],
    [{ keepAliveTimeoutMs: 1.5 }, 'hardenServer: keepAliveTimeoutMs must be a positive integer, got 1.5'],
    [{ maxHeaderSizeBytes: '16k' }, 'hardenServer: maxHeaderSizeBytes must be a positive integer, got "16k"'],
    [{ maxRequestsPerSocket: -1 }, 'hardenServer: maxRequestsPerSocket must be a non-negative integer'],
    [{ socketIdleTimeoutMs: Number.NaN }, 'hardenServer: socketIdleTimeoutMs must be a non-negative integer'],
  ])('throws a TypeError naming the option for %o', (options, message) => {
    expectTypeError(() => hardenServer(new http.Server(), options as never), message);
  });

  it('leaves the server untouched when an option is invalid', () => {
    const server = new http.Server();
    const headersTimeout = server.headersTimeout;
    expect(() => hardenServer(server, { headersTimeoutMs: 1_000, keepAliveTimeoutMs: 0 })).toThrow(TypeError);
    expect(server.headersTimeout).toBe(headersTimeout);
  });
});

describe('createServer', () => {
  it.each([
    [
      { connectionsCheckingIntervalMs: 0 },
      'createServer: connectionsCheckingIntervalMs must be a positive integer',
    ],
    [{ headersTimeoutMs: -5 }, 'createServer: headersTimeoutMs must be a positive integer, got -5'],
  ])('throws a TypeError naming the option for %o', (options, message) => {
    expectTypeError(() => createServer(okHandler, options), message);
  });

  it('throws a TypeError when the handler is not a function', () => {
    expectTypeError(() => createServer(undefined as never), 'createServer: handler must be a function');
  });

  it('cuts a client sending its headers byte by byte after about headersTimeoutMs, serving others meanwhile', async () => {
    const server = track(
      createServer(okHandler, { headersTimeoutMs: 300, connectionsCheckingIntervalMs: 100 }),
    );
    const { port } = await listen(server);
    const slow = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => slow.once('connect', resolve));
    const connectedAt = performance.now();
    const head = `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(1_000)}`;
    let sent = 0;
    let received = '';
    slow.setEncoding('utf8');
    slow.on('data', (chunk: string) => (received += chunk));
    slow.on('error', () => undefined); // EPIPE or ECONNRESET once the server cuts it
    let slowIsClosed = false;
    const slowClosed = closed(slow).then(() => {
      slowIsClosed = true;
    });
    const drip = setInterval(() => {
      if (slow.writable) slow.write(head.charAt(sent++));
    }, 20);
    try {
      const normal = await get(port, '/');
      // Served meanwhile: the answer came while the slow client was still connected, not after the cut.
      const slowOpenWhenServed = !slowIsClosed;
      await slowClosed;
      const cutAfterMs = performance.now() - connectedAt;

      expect(normal).toMatchObject({ status: 200, body: 'ok' });
      expect(slowOpenWhenServed).toBe(true);
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
      expect(cutAfterMs).toBeGreaterThanOrEqual(250);
      expect(cutAfterMs).toBeLessThan(1_000);
    } finally {
      clearInterval(drip);
      slow.destroy();
    }
  });
});

describe.each([
  ['hardenServer', () => hardenServer(http.createServer(okHandler), { maxHeaderSizeBytes: 1_024 })],
  ['createServer', () => createServer(okHandler, { maxHeaderSizeBytes: 1_024 })],
])('maxHeaderSizeBytes with %s', (_name, make) => {
  it('answers 431 to a request whose headers exceed it and serves one under it', async () => {
    const { port } = await listen(track(make()));
    await expect(get(port, '/', { headers: { 'x-big': 'a'.repeat(2_000) } })).resolves.toMatchObject({
      status: 431,
    });
    await expect(get(port, '/', { headers: { 'x-small': 'a'.repeat(500) } })).resolves.toMatchObject({
      status: 200,
    });
  });
});

describe('shutdown', () => {
  it('waits for an in-flight response, then closes its kept-alive connection as soon as it is sent', async () => {
    const arrived = signal();
    const server = track(
      createServer((_request, response) => {
        arrived.resolve();
        response.write('slow ');
        setTimeout(() => response.end('done'), 300);
      }),
    );
    const { port } = await listen(server);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const reply = get(port, '/slow', { agent });
      await arrived.promise;
      const startedAt = performance.now();
      const result = await shutdown(server, [], { timeoutMs: 5_000 });

      expect(result).toEqual({ drained: true, forcedConnections: 0, errors: [] });
      expect(performance.now() - startedAt).toBeLessThan(1_500);
      await expect(reply).resolves.toMatchObject({ status: 200, body: 'slow done' });
      expect(server.listening).toBe(false);
    } finally {
      agent.destroy();
    }
  });

  it('closes idle keep-alive connections at once', async () => {
    const server = track(createServer(okHandler));
    const { port } = await listen(server);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const { socket } = await get(port, '/', { agent });
      const socketClosed = closed(socket);
      // At once on shutdown's own clock: it must not need any of its timers (a fake clock that
      // never moves), whatever the load on the machine.
      jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
      let outcome: SettledOnFakeClock<ShutdownResult>;
      try {
        outcome = await settleOnFakeClock(() => shutdown(server, [], { timeoutMs: 5_000 }), 0);
      } finally {
        jest.useRealTimers();
      }
      await socketClosed;

      expect(outcome).toMatchObject({ status: 'fulfilled', value: { drained: true }, fakeMs: 0 });
    } finally {
      agent.destroy();
    }
  });

  it('answers a request arriving on a busy connection during shutdown with Connection: close', async () => {
    const arrived = signal();
    const server = track(
      createServer((request, response) => {
        if (request.url === '/slow') {
          arrived.resolve();
          setTimeout(() => response.end('first'), 200);
        } else {
          response.end('second');
        }
      }),
    );
    const { port } = await listen(server);
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    const socketClosed = closed(socket);
    try {
      socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await arrived.promise;
      const result = shutdown(server, [], { timeoutMs: 5_000 });
      socket.write('GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await expect(result).resolves.toMatchObject({ drained: true });
      await socketClosed;

      const [first, second] = received.split(/(?=HTTP\/1\.1 )/);
      expect(first).toMatch(/^HTTP\/1\.1 200 [^]*Connection: keep-alive[^]*first$/i);
      expect(second).toMatch(/^HTTP\/1\.1 200 [^]*Connection: close[^]*second$/i);
    } finally {
      socket.destroy();
    }
  });

  it('force-closes a response that never finishes after timeoutMs, leaving no timer, handle or listener', async () => {
    // Only what this test creates is counted: its server, both ends of its connection, and every
    // Timeout made while shutdown runs (its own and Node's).
    const handles = watchResources(['TCPSERVERWRAP', 'TCPWRAP']);
    let timers: ResourceWatch | undefined;
    try {
      const arrived = signal();
      const server = track(
        createServer((_request, response) => {
          arrived.resolve();
          response.write('partial');
        }),
      );
      const { port } = await listen(server);
      const listenerCounts = [server.listenerCount('request'), server.listenerCount('close')];
      let clientResponse: http.IncomingMessage | undefined;
      const request = http.get({ host: '127.0.0.1', port, path: '/never', agent: false }, (response) => {
        clientResponse = response;
        response.resume();
      });
      request.on('error', () => undefined);
      const requestClosed = closed(request);
      await arrived.promise;

      timers = watchResources(['Timeout']);
      const startedAt = performance.now();
      const result = await shutdown(server, [], { timeoutMs: 200 });
      const elapsedMs = performance.now() - startedAt;
      await requestClosed;

      expect(result.drained).toBe(false);
      expect(result.forcedConnections).toBeGreaterThanOrEqual(1);
      expect(elapsedMs).toBeGreaterThanOrEqual(190);
      expect(elapsedMs).toBeLessThan(1_000);
      expect(clientResponse?.complete).toBe(false);
      expect([server.listenerCount('request'), server.listenerCount('close')]).toEqual(listenerCounts);
      // Node reports a cleared timer or a closed handle a turn or more later: a bounded wait.
      await waitFor(() => timers!.live('Timeout') === 0, {
        what: 'every timer made during shutdown to be gone',
        detail: timers.describe,
      });
      await waitFor(() => handles.live('TCPSERVERWRAP') + handles.live('TCPWRAP') === 0, {
        what: 'the server and both ends of its connection to close',
        detail: handles.describe,
      });
    } finally {
      timers?.stop();
      handles.stop();
    }
  });

  it('lets the close hooks of force-closed responses run before the closables', async () => {
    const log: string[] = [];
    const arrived = signal();
    const server = track(
      createServer((_request, response) => {
        response.on('close', () => log.push('response closed'));
        arrived.resolve();
        response.write('partial');
      }),
    );
    const { port } = await listen(server);
    const request = http.get({ host: '127.0.0.1', port, path: '/never', agent: false }, (response) => {
      response.resume();
    });
    request.on('error', () => undefined);
    await arrived.promise;

    await shutdown(server, [closable('usage sink', log)], { timeoutMs: 50 });

    expect(log).toEqual(['response closed', 'usage sink']);
  });

  it('resolves for a server that never listened', async () => {
    await expect(shutdown(track(new http.Server()), [])).resolves.toEqual({
      drained: true,
      forcedConnections: 0,
      errors: [],
    });
  });

  it('returns the same promise to concurrent and later calls and closes each closable once', async () => {
    const server = track(new http.Server());
    const log: string[] = [];
    const store = closable('store', log);
    const sink = closable('sink', log);
    const first = shutdown(server, [store, sink, store]);
    const second = shutdown(server, [store, sink]);

    expect(second).toBe(first);
    await first;
    expect(shutdown(server, [sink])).toBe(first);
    expect(log).toEqual(['store', 'sink']);
  });

  it('records a closable that throws or rejects and still closes the others, in order', async () => {
    const log: string[] = [];
    const throwing = closable('throwing', log, 'throw');
    const rejecting = closable('rejecting', log, 'reject');
    const closables = [closable('a', log), throwing, rejecting, closable('b', log)];

    const result = await shutdown(track(new http.Server()), closables);

    expect(log).toEqual(['a', 'throwing', 'rejecting', 'b']);
    expect(result.errors).toEqual([throwing.error, rejecting.error]);
  });

  it('awaits each closable before closing the next, and leaves no timer behind', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      const log: string[] = [];
      const flushing = signal();
      const slow: Closable = {
        close: () => {
          log.push('slow:start');
          flushing.resolve();
          return new Promise<void>((resolve) => setTimeout(resolve, 1_000)).then(
            () => void log.push('slow:end'),
          );
        },
      };
      const result = shutdown(track(new http.Server()), [slow, closable('next', log)]);
      await flushing.promise;

      await jest.advanceTimersByTimeAsync(999);
      expect(log).toEqual(['slow:start']);
      await jest.advanceTimersByTimeAsync(1);
      await expect(result).resolves.toMatchObject({ errors: [] });
      expect(log).toEqual(['slow:start', 'slow:end', 'next']);
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  it.each([
    [
      'a negative timeoutMs',
      { timeoutMs: -1 },
      [],
      'shutdown: timeoutMs must be a non-negative integer, got -1',
    ],
    [
      'a closable without close()',
      {},
      [{ close: () => undefined }, {}],
      'shutdown: closables[1] must have a close() method',
    ],
    ['closables that are not iterable', {}, null, 'shutdown: closables must be an iterable'],
  ])(
    'throws a TypeError for %s and does not start shutting down',
    async (_case, options, closables, message) => {
      const server = track(new http.Server());
      expectTypeError(() => shutdown(server, closables as never, options), message);

      const log: string[] = [];
      await shutdown(server, [closable('later', log)]);
      expect(log).toEqual(['later']);
    },
  );

  it('throws a TypeError when the server is not an http.Server', () => {
    expectTypeError(() => shutdown({} as never, []), 'shutdown: server must be an http.Server');
  });
});
