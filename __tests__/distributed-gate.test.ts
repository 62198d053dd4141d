// distributedGate against a real Redis (REDIS_URL, default 127.0.0.1:6379) and real Express apps
// (5 and 4) over real sockets: two apps stand for two instances sharing one gate; leases of a killed
// instance come back; refusals keep the local gate's shapes; an unreachable Redis fails closed or
// open.
import { afterAll, afterEach, expect, it, jest } from '@jest/globals';
import http from 'node:http';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { NextFunction, Request, Response } from 'express';
import { Redis } from 'ioredis';
import { getContext } from '../lib/context.js';
import {
  distributedGate,
  type DistributedGate,
  type DistributedGateOptions,
} from '../lib/middleware/distributed-gate.js';
import { expressVersions } from './support/express-versions.js';
import { listen, settleOnFakeClock, waitFor, watchResources } from './support/http.js';
import { requireRedis } from './support/redis.js';

type ExpressFactory = (typeof expressVersions)[number][1];

// First, before any client: one clear failure when Redis is down, or visibly skipped suites
// under LLMUX_SKIP_REDIS=1 (see support/redis.ts).
const redis = await requireRedis();
const { describe } = redis;
const REDIS_URL = redis.url;
const DOWN_URL = 'redis://127.0.0.1:1';
/** Every key this file writes is under this prefix; afterAll deletes them. */
const RUN_PREFIX = `llmux-test:gate:${process.pid}:${Date.now()}:`;

const admin = redis.client({ maxRetriesPerRequest: 1 });
const hostClients: Redis[] = [];
const gates: DistributedGate[] = [];
let names = 0;

// Each test's gates and clients go when it ends: a gate left open on an unreachable Redis keeps
// reconnecting, and its timers and sockets would show up in the next test's leak check.
afterEach(async () => {
  await Promise.all(gates.splice(0).map((gate) => gate.close()));
  // ioredis arms a 2 s timer when disconnecting a client whose socket is already gone.
  for (const client of hostClients.splice(0)) if (client.status !== 'end') client.disconnect();
});

afterAll(async () => {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await admin.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await admin.quit();
});

/** A fresh gate name, so no two tests share permits. */
const freshName = (): string => `g${++names}`;
/** The gate's holder set, as the scripts name it. */
const holdersKey = (name: string): string => `${RUN_PREFIX}gate:${name}`;

function openGate(options: Partial<DistributedGateOptions> & { max: number }): DistributedGate {
  const gate = distributedGate({
    ...(options.redis === undefined ? { url: REDIS_URL } : {}),
    prefix: RUN_PREFIX,
    // A fresh gate's first call connects and loads its scripts: on a loaded machine that can take
    // longer than the 500 ms default. Tests about timeouts set their own.
    commandTimeoutMs: 2_000,
    ...options,
  });
  gates.push(gate);
  return gate;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** The library's own code, as its frames show in a stack. */
const LIB_CODE = fileURLToPath(new URL('../lib/', import.meta.url));
/** Timers faked while Redis and the sockets run on real I/O. */
const FAKE_TIMERS: Parameters<typeof jest.useFakeTimers>[0] = {
  doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'],
};

/** A promise with its resolver: handlers that hold their permit until a test lets them go. */
function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A GET over its own connection; `abort()` destroys the socket, as a client that gives up. */
function get(port: number, path: string) {
  const req = http.get({ host: '127.0.0.1', port, path, agent: false });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString() }),
      );
    });
  });
  // An answer a test never awaits (a server closed in `finally` after a failure) must not reject
  // unhandled into the next test; awaiting it still throws.
  answer.catch(() => {});
  return { answer, abort: () => req.destroy() };
}

const errorOf = (answer: Answer) =>
  (JSON.parse(answer.body) as { error: { type: string; code: string } }).error;

/** An app with the gate in front of `/work`, whose handler runs `work` (by default, answers at once). */
function appWith(express: ExpressFactory, gate: DistributedGate, work: (req: Request) => Promise<void>) {
  const app = express();
  app.get('/work', gate, (req: Request, res: Response, next: NextFunction) => {
    work(req).then(() => res.json({ ok: true, gateWaitMs: getContext(res)?.gateWaitMs }), next);
  });
  return app;
}

describe.each(expressVersions)('distributedGate (%s)', (_label, express) => {
  it('never lets more than max requests run across two instances sharing one Redis, and serves them all', async () => {
    const name = freshName();
    const gateA = openGate({ name, max: 4, maxQueue: 30 });
    const gateB = openGate({ name, max: 4, maxQueue: 30 });
    let running = 0;
    let peak = 0;
    const work = async () => {
      peak = Math.max(peak, ++running);
      await sleep(50);
      running--;
    };
    const a = await listen(appWith(express, gateA, work));
    const b = await listen(appWith(express, gateB, work));
    try {
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) => get(i % 2 === 0 ? a.port : b.port, '/work').answer),
      );
      expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 30 }, () => 200));
      expect(peak).toBeLessThanOrEqual(4);
      expect(peak).toBeGreaterThanOrEqual(2);
      // Every permit is released exactly once: none is left held in Redis.
      await waitFor(async () => (await admin.zcard(holdersKey(name))) === 0, {
        what: 'every permit released',
      });
      expect(gateA.stats()).toMatchObject({ inFlight: 0, queued: 0, bypassed: 0 });
      expect(gateB.stats()).toMatchObject({ inFlight: 0, queued: 0, bypassed: 0 });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('serves the requests waiting on one instance in arrival order', async () => {
    const gate = openGate({ name: freshName(), max: 1, maxQueue: 3 });
    const holder = deferred();
    const order: string[] = [];
    const server = await listen(
      appWith(express, gate, async (req) => {
        const id = String(req.query.id);
        order.push(id);
        if (id === 'holder') await holder.promise;
      }),
    );
    try {
      const first = get(server.port, '/work?id=holder');
      await waitFor(() => gate.stats().inFlight === 1, { what: 'the permit held' });
      const waiting = [];
      for (const id of ['1', '2', '3']) {
        waiting.push(get(server.port, `/work?id=${id}`).answer);
        await waitFor(() => gate.stats().queued === Number(id), { what: `request ${id} queued` });
      }
      holder.resolve();
      await first.answer;
      const answers = await Promise.all(waiting);
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
      expect(order).toEqual(['holder', '1', '2', '3']);
      expect((JSON.parse(answers[2]!.body) as { gateWaitMs: number }).gateWaitMs).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('answers queue_full and queue_timeout as the local gate does: 503 overloaded_error with Retry-After', async () => {
    const holder = deferred();
    const full = openGate({ name: freshName(), max: 1, maxQueue: 1 });
    const timing = openGate({ name: freshName(), max: 1, queueTimeoutMs: 100 });
    const fullServer = await listen(appWith(express, full, () => holder.promise));
    const timingServer = await listen(appWith(express, timing, () => holder.promise));
    try {
      const held = [get(fullServer.port, '/work'), get(timingServer.port, '/work')];
      await waitFor(() => full.stats().inFlight === 1 && timing.stats().inFlight === 1, {
        what: 'both permits held',
      });
      const queued = get(fullServer.port, '/work');
      await waitFor(() => full.stats().queued === 1, { what: 'one request queued' });

      const refused = await get(fullServer.port, '/work').answer;
      expect(refused.status).toBe(503);
      expect(errorOf(refused)).toMatchObject({ type: 'overloaded_error', code: 'queue_full' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);

      const started = performance.now();
      const timedOut = await get(timingServer.port, '/work').answer;
      expect(performance.now() - started).toBeGreaterThanOrEqual(90);
      expect(timedOut.status).toBe(503);
      expect(errorOf(timedOut)).toMatchObject({ type: 'overloaded_error', code: 'queue_timeout' });
      expect(Number(timedOut.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(timing.stats().queued).toBe(0);

      holder.resolve();
      const answers = await Promise.all([...held, queued].map((call) => call.answer));
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    } finally {
      holder.resolve();
      await Promise.all([fullServer.close(), timingServer.close()]);
    }
  });

  it('drops a queued request whose client leaves, and never runs it', async () => {
    const name = freshName();
    const gate = openGate({ name, max: 1 });
    const holder = deferred();
    const seen: string[] = [];
    const server = await listen(
      appWith(express, gate, async (req) => {
        seen.push(String(req.query.id));
        if (req.query.id === 'holder') await holder.promise;
      }),
    );
    try {
      const first = get(server.port, '/work?id=holder');
      await waitFor(() => gate.stats().inFlight === 1, { what: 'the permit held' });
      const leaving = get(server.port, '/work?id=leaving');
      leaving.answer.catch(() => {});
      await waitFor(() => gate.stats().queued === 1, { what: 'a request queued' });
      leaving.abort();
      await waitFor(() => gate.stats().queued === 0, { what: 'the queue emptied' });
      holder.resolve();
      expect((await first.answer).status).toBe(200);
      expect((await get(server.port, '/work?id=next').answer).status).toBe(200);
      expect(seen).toEqual(['holder', 'next']);
      await waitFor(async () => (await admin.zcard(holdersKey(name))) === 0, {
        what: 'every permit released',
      });
    } finally {
      holder.resolve();
      await server.close();
    }
  });
});

describe('distributedGate leases', () => {
  const [, express] = expressVersions[0]!;

  it("keeps a long request's permit past its lease, and frees a killed instance's permit after it", async () => {
    const name = freshName();
    const hostA = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    hostA.on('error', () => {});
    hostClients.push(hostA);
    // Renewed every third of a lease: a stall of the test's event loop shorter than two thirds of
    // it (600 ms) cannot lapse A's permit.
    const gateA = openGate({ redis: hostA, name, max: 1, leaseMs: 900, pollMs: 50 });
    const gateB = openGate({ name, max: 1, leaseMs: 900, pollMs: 50 });
    const hung = deferred();
    const a = await listen(appWith(express, gateA, () => hung.promise));
    const b = await listen(appWith(express, gateB, () => Promise.resolve()));
    try {
      const stuck = get(a.port, '/work');
      stuck.answer.catch(() => {});
      await waitFor(() => gateA.stats().inFlight === 1, { what: 'instance A holding the permit' });
      const waiting = get(b.port, '/work');
      await waitFor(() => gateB.stats().queued === 1, { what: 'a request queued on instance B' });
      // Three leases long: A's renewals keep the permit, so B still waits. A bounded wait on
      // purpose: it shows that something does not happen (B is not admitted).
      await sleep(2_700);
      expect(gateB.stats()).toMatchObject({ queued: 1, inFlight: 0, held: 1 });
      expect(gateA.stats().lapsed).toBe(0);

      // A is "killed": its connection drops, nothing is released and no renewal gets through.
      hostA.disconnect();
      const killedAt = performance.now();
      const answer = await waiting.answer;
      expect(answer.status).toBe(200);
      // Within a lease (and B's polling) of the kill, with room for a loaded machine.
      expect(performance.now() - killedAt).toBeLessThan(900 + 2_000);
      expect((JSON.parse(answer.body) as { gateWaitMs: number }).gateWaitMs).toBeGreaterThan(2_700);
    } finally {
      hung.resolve();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("wakes a waiter on another instance through the release channel alone, under a host client's keyPrefix", async () => {
    const name = freshName();
    const host = new Redis(REDIS_URL, { keyPrefix: RUN_PREFIX, maxRetriesPerRequest: 1 });
    hostClients.push(host);
    const gateA = openGate({ redis: host, prefix: 'kp:', name, max: 1 });
    const gateB = openGate({ redis: host, prefix: 'kp:', name, max: 1 });
    const holder = deferred();
    const a = await listen(appWith(express, gateA, () => holder.promise));
    const b = await listen(appWith(express, gateB, () => Promise.resolve()));
    // Both instances listen on the release channel (ioredis never prefixes channels).
    const channel = `${RUN_PREFIX}kp:gate:${name}:released`;
    await waitFor(async () => ((await admin.pubsub('NUMSUB', channel)) as [string, number])[1] === 2, {
      what: 'both instances subscribed to the release channel',
    });
    // From here no timer runs: B cannot poll, so only the release announcement can wake it.
    jest.useFakeTimers(FAKE_TIMERS);
    try {
      const first = get(a.port, '/work');
      await waitFor(() => gateA.stats().inFlight === 1, { what: 'instance A holding the permit' });
      expect(await admin.zcard(`${RUN_PREFIX}kp:gate:${name}`)).toBe(1);
      const waiting = get(b.port, '/work');
      await waitFor(() => gateB.stats().queued === 1, { what: 'a request queued on instance B' });
      holder.resolve();
      expect((await waiting.answer).status).toBe(200);
      expect((await first.answer).status).toBe(200);
    } finally {
      jest.useRealTimers();
      holder.resolve();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('counts a holder inserted with a short lease, and admits past it once it expires', async () => {
    const name = freshName();
    const gate = openGate({ name, max: 1, pollMs: 50 });
    const started = performance.now();
    const [seconds, micros] = await admin.time();
    const nowMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await admin.zadd(holdersKey(name), nowMs + 200, 'ghost-of-a-crashed-instance');
    const server = await listen(appWith(express, gate, () => Promise.resolve()));
    try {
      const answer = await get(server.port, '/work').answer;
      expect(answer.status).toBe(200);
      // Not before the ghost's lease ran out, 200 ms after Redis' clock was read.
      expect(performance.now() - started).toBeGreaterThanOrEqual(190);
      expect(await admin.zscore(holdersKey(name), 'ghost-of-a-crashed-instance')).toBeNull();
    } finally {
      await server.close();
    }
  });
});

describe('distributedGate when Redis cannot be reached', () => {
  const [, express] = expressVersions[0]!;
  const pass = () => Promise.resolve();

  it('fails closed with a quick 503 store_unavailable and Retry-After', async () => {
    // Quick on the gate's own (fake) clock: within 400 ms of it, whatever the load on the machine.
    jest.useFakeTimers(FAKE_TIMERS);
    const gate = openGate({ url: DOWN_URL, max: 2, commandTimeoutMs: 200 });
    const server = await listen(appWith(express, gate, pass));
    try {
      for (let i = 0; i < 2; i++) {
        const outcome = await settleOnFakeClock(() => get(server.port, '/work').answer, 400);
        expect(outcome.status).toBe('fulfilled');
        const answer = (outcome as PromiseFulfilledResult<Answer>).value;
        expect(answer.status).toBe(503);
        expect(errorOf(answer).code).toBe('store_unavailable');
        expect(answer.headers['retry-after']).toBe('1');
      }
      expect(gate.stats()).toMatchObject({ inFlight: 0, queued: 0, bypassed: 0 });
    } finally {
      jest.useRealTimers();
      await server.close();
    }
  });

  it('fails open: lets requests through unlimited, counted as bypassed', async () => {
    const gate = openGate({ url: DOWN_URL, max: 1, commandTimeoutMs: 200, onStoreError: 'fail-open' });
    const server = await listen(appWith(express, gate, pass));
    try {
      const answers = await Promise.all([get(server.port, '/work').answer, get(server.port, '/work').answer]);
      expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
      expect(gate.stats()).toMatchObject({ inFlight: 0, bypassed: 2 });
    } finally {
      await server.close();
    }
  });

  it('refuses while Redis is away mid-run and serves again once it is back, by itself', async () => {
    // A TCP relay to Redis that can be cut: "down" drops every connection, old and new.
    let down = false;
    const sockets = new Set<Socket>();
    const relay: Server = createServer((client) => {
      if (down) {
        client.destroy();
        return;
      }
      const upstream = createConnection(redis.port, redis.host);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const { port } = relay.address() as AddressInfo;
    const gate = openGate({
      url: `redis://127.0.0.1:${port}`,
      name: freshName(),
      max: 2,
      commandTimeoutMs: 200,
    });
    const server = await listen(appWith(express, gate, pass));
    try {
      expect((await get(server.port, '/work').answer).status).toBe(200);
      down = true;
      for (const socket of sockets) socket.destroy();
      const refused = await get(server.port, '/work').answer;
      expect(refused.status).toBe(503);
      expect(errorOf(refused).code).toBe('store_unavailable');
      down = false;
      await waitFor(async () => (await get(server.port, '/work').answer).status === 200, {
        what: 'service back',
        timeoutMs: 3_000,
        intervalMs: 5,
      });
    } finally {
      await server.close();
      await gate.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  });

  it('hears releases again after a reconnect, and close() during the resubscription rejects nothing', async () => {
    // A TCP relay to Redis that can drop every connection, and can hold back Redis' answer to a
    // SUBSCRIBE sent on a fresh connection: close() then finds the resubscription in flight.
    let holdSubscribe = false;
    let subscribesHeld = 0;
    const sockets = new Set<Socket>();
    const relay: Server = createServer((client) => {
      const upstream = createConnection(redis.port, redis.host);
      let mute = false;
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      }
      client.on('data', (chunk: Buffer) => {
        if (holdSubscribe && /subscribe/i.test(chunk.toString('latin1'))) {
          mute = true;
          subscribesHeld++;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!mute) client.write(chunk);
      });
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const { port } = relay.address() as AddressInfo;
    const url = `redis://127.0.0.1:${port}`;
    const name = freshName();
    const cut = () => {
      for (const socket of sockets) socket.destroy();
    };
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    // Two instances share one permit; B's waiter is woken by A's release announcement.
    const a = openGate({ url, name, max: 1, commandTimeoutMs: 200, pollMs: 60_000 });
    const b = openGate({ url: REDIS_URL, name, max: 1, pollMs: 60_000 });
    const holder = deferred();
    const serverA = await listen(appWith(express, a, pass));
    const serverB = await listen(appWith(express, b, () => holder.promise));
    const subscribers = async () =>
      ((await admin.pubsub('NUMSUB', `${holdersKey(name)}:released`)) as [string, number])[1];
    try {
      expect((await get(serverA.port, '/work').answer).status).toBe(200);
      await waitFor(async () => (await subscribers()) === 2, { what: 'both gates subscribed' });
      // A's connections drop and come back: its subscriber must subscribe again by itself.
      cut();
      await waitFor(async () => (await subscribers()) === 1, { what: "A's subscription gone" });
      await waitFor(async () => (await subscribers()) === 2, {
        what: "A's subscriber subscribed again",
        timeoutMs: 4_000,
      });
      // B holds the permit, A waits; B's release is announced, and A hears it.
      const first = get(serverB.port, '/work');
      await waitFor(() => b.stats().inFlight === 1, { what: 'B holding the permit' });
      const waiting = get(serverA.port, '/work');
      await waitFor(() => a.stats().queued === 1, { what: 'A waiting for the permit' });
      holder.resolve();
      expect((await first.answer).status).toBe(200);
      // pollMs is a minute: only the announcement can have woken A before the test times out.
      expect((await waiting.answer).status).toBe(200);

      // Now the resubscription after a second cut never gets its answer: close() meets it.
      holdSubscribe = true;
      cut();
      await waitFor(() => subscribesHeld > 0, { what: 'the resubscription sent', timeoutMs: 4_000 });
      await a.close();
      await sleep(50);
      expect(rejections).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
      holder.resolve();
      await serverA.close();
      await serverB.close();
      cut();
      await new Promise((resolve) => relay.close(resolve));
    }
  });
});

describe('distributedGate close()', () => {
  const [, express] = expressVersions[0]!;

  it('answers waiters with gate_closed, gives its permits back in Redis, and is idempotent', async () => {
    const name = freshName();
    const gate = openGate({ name, max: 1 });
    const holder = deferred();
    const server = await listen(appWith(express, gate, () => holder.promise));
    try {
      const first = get(server.port, '/work');
      await waitFor(() => gate.stats().inFlight === 1, { what: 'the permit held' });
      const waiting = get(server.port, '/work');
      await waitFor(() => gate.stats().queued === 1, { what: 'a request queued' });
      await Promise.all([gate.close(), gate.close()]);
      const refused = await waiting.answer;
      expect(refused.status).toBe(503);
      expect(errorOf(refused)).toMatchObject({ type: 'overloaded_error', code: 'gate_closed' });
      expect(await admin.zcard(holdersKey(name))).toBe(0);
      expect(gate.stats()).toMatchObject({ inFlight: 0, queued: 0 });
      expect(errorOf(await get(server.port, '/work').answer).code).toBe('gate_closed');
      holder.resolve();
      expect((await first.answer).status).toBe(200);
      await gate.close();
    } finally {
      holder.resolve();
      await server.close();
    }
  });

  it('leaves no timer and no socket behind after close()', async () => {
    // Only what this test makes counts: not what earlier tests left, nor the admin client (made
    // connected first, as it connects lazily).
    await admin.ping();
    const made = watchResources(['Timeout', 'TCPWRAP']);
    try {
      const gate = distributedGate({
        url: REDIS_URL,
        prefix: RUN_PREFIX,
        name: freshName(),
        max: 1,
        pollMs: 20,
      });
      const server = await listen(appWith(express, gate, () => sleep(30)));
      // Contention starts every kind of timer: renewal, polling, queue timeouts.
      const answers = await Promise.all([1, 2, 3].map(() => get(server.port, '/work').answer));
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
      await server.close();
      await gate.close();
      // No socket, no timer that keeps the process alive, and none of the gate's own (its renewal,
      // polling and command timers are unref'd); Node's own unref'd ones may lapse later.
      const left = () =>
        made.live('TCPWRAP') +
        made.live('Timeout', { refed: true }) +
        made.live('Timeout', { from: LIB_CODE });
      await waitFor(() => left() === 0, {
        what: 'the timers and sockets of the gate and the server to be gone',
        detail: made.describe,
      });
    } finally {
      made.stop();
    }
  });
});

describe('distributedGate options', () => {
  it.each([
    [{ url: REDIS_URL, max: 0 }, 'distributedGate: max must be a positive integer, got 0'],
    [{ url: REDIS_URL, max: 2, maxQueue: -1 }, 'distributedGate: maxQueue'],
    [{ url: REDIS_URL, max: 2, leaseMs: 10 }, 'distributedGate: leaseMs must be at least 30'],
    [{ url: REDIS_URL, max: 2, pollMs: 0 }, 'distributedGate: pollMs'],
    [{ url: REDIS_URL, max: 2, commandTimeoutMs: 1.5 }, 'distributedGate: commandTimeoutMs'],
    [{ url: REDIS_URL, max: 2, name: '' }, 'distributedGate: name'],
    [{ url: REDIS_URL, max: 2, prefix: '' }, 'distributedGate: prefix'],
    [
      { url: REDIS_URL, max: 2, onStoreError: 'ignore' },
      "distributedGate: onStoreError must be one of 'fail-closed'",
    ],
    [{ max: 2 }, 'distributedGate: give redis (an ioredis client) or url'],
    [{ url: 'http://127.0.0.1:6379', max: 2 }, 'distributedGate: url must be a redis://'],
    [{ redis: {}, max: 2 }, 'distributedGate: redis must be an ioredis client'],
  ])('refuses %j with a TypeError naming the option', (options, message) => {
    expect(() => distributedGate(options as unknown as DistributedGateOptions)).toThrow(
      expect.objectContaining({ name: 'TypeError', message: expect.stringContaining(message) }),
    );
  });
});
