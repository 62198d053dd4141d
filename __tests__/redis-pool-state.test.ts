// sharePoolState against a real Redis (REDIS_URL, default 127.0.0.1:6379): two pools sharing one
// Redis act as two instances; cooldowns, disables, enables and daily caps cross between them, a
// later instance loads the state, and an unreachable Redis leaves the pool serving on local state.
import { afterAll, expect, it } from '@jest/globals';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { RequestContext } from '../lib/context.js';
import { LlmuxError } from '../lib/index.js';
import { isStoreUnavailableError } from '../lib/errors/store.js';
import { utcDayNumber } from '../lib/keys/utc.js';
import type { Logger } from '../lib/log.js';
import { UpstreamPool, type PooledUpstreamOptions, type UpstreamStateChange } from '../lib/upstream/pool.js';
import {
  sharePoolState,
  type PoolStateSharing,
  type SharePoolStateOptions,
} from '../lib/upstream/redis-pool-state.js';
import type { AttemptOutcome } from '../lib/upstream/source.js';
import { waitFor, watchResources } from './support/http.js';
import { realProcess } from './support/real-process.js';
import { requireRedis } from './support/redis.js';

// First, before any client: one clear failure when Redis is down, or visibly skipped suites
// under LLMUX_SKIP_REDIS=1 (see support/redis.ts).
const redis = await requireRedis();
const { describe } = redis;
const REDIS_URL = redis.url;
/** Every key this file writes is under this prefix; afterAll deletes them. */
const RUN_PREFIX = `llmux-test:pool-state:${process.pid}:${Date.now()}:`;
const ctx = new RequestContext('pool-state-test');
const OK: AttemptOutcome = { ok: true };
const RATE_LIMITED: AttemptOutcome = { ok: false, category: 'rate_limit', status: 429, retryAfterMs: 60_000 };
/** Bound of every wait for pub/sub delivery or a reconnection. */
const WAIT_MS = 5_000;
/** The library's own code, as its frames show in a stack. */
const LIB_CODE = fileURLToPath(new URL('../lib/', import.meta.url));

const shared = redis.client({ enableOfflineQueue: false, maxRetriesPerRequest: 1 });
let prefixes = 0;
/** A prefix no other test of this run uses: a fresh, empty shared state. */
const freshPrefix = (): string => `${RUN_PREFIX}${++prefixes}:`;
const opened: PoolStateSharing[] = [];

afterAll(async () => {
  await Promise.all(opened.map((sharing) => sharing.close()));
  let cursor = '0';
  do {
    const [next, keys] = await shared.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await shared.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await shared.quit();
});

/** One app instance: its own pool over the named upstreams, shared under `prefix`. */
function instance(
  prefix: string,
  names: string[],
  options: Partial<SharePoolStateOptions> & { upstream?: Partial<PooledUpstreamOptions> } = {},
) {
  const { upstream, ...sharingOptions } = options;
  const pool = new UpstreamPool({
    upstreams: names.map((name) => ({ name, url: `https://${name}.example.com/v1`, ...upstream })),
  });
  const sharing = sharePoolState(
    pool,
    sharingOptions.redis === undefined
      ? { url: REDIS_URL, prefix, ...sharingOptions }
      : { prefix, ...sharingOptions },
  );
  opened.push(sharing);
  const status = (name: string) => pool.status().find((s) => s.name === name)!;
  /** acquire + release with `outcome`; returns the name picked. */
  const attempt = (outcome: AttemptOutcome = OK): string => {
    const endpoint = pool.acquire(ctx);
    pool.release(endpoint, outcome);
    return endpoint.name;
  };
  return { pool, sharing, status, attempt };
}

function refusal(fn: () => unknown): LlmuxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LlmuxError);
    return err as LlmuxError;
  }
  throw new Error('expected a refusal');
}

describe('sharePoolState across instances', () => {
  it('makes the other instance skip an upstream one instance saw a 429 from', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['u1', 'u2']);
    // The second instance runs on the host's own client.
    const b = instance(prefix, ['u1', 'u2'], { redis: shared });
    await Promise.all([a.sharing.ready(), b.sharing.ready()]);

    expect(a.attempt(RATE_LIMITED)).toBe('u1');
    await waitFor(() => b.status('u1').state === 'cooling', {
      timeoutMs: WAIT_MS,
      what: 'the cooldown on b',
    });
    expect(b.status('u1').cooldownRemainingMs).toBeGreaterThan(50_000);
    expect([b.attempt(), b.attempt(), b.attempt()]).toEqual(['u2', 'u2', 'u2']);

    await Promise.all([a.sharing.close(), b.sharing.close()]);
    expect(shared.status).toBe('ready');
  });

  it('refuses with 503 no_upstream_available on the other instance when the cooling upstream is the only one', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['solo']);
    const b = instance(prefix, ['solo']);
    await Promise.all([a.sharing.ready(), b.sharing.ready()]);

    a.attempt(RATE_LIMITED);
    await waitFor(() => b.status('solo').state === 'cooling', {
      timeoutMs: WAIT_MS,
      what: 'the cooldown on b',
    });
    const error = refusal(() => b.pool.acquire(ctx));
    expect(error).toMatchObject({ status: 503, code: 'no_upstream_available' });
    expect(error.retryAfterSeconds).toBeGreaterThan(50);
  });

  it('propagates a disable from one instance and an operator enable from the other', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['u1', 'u2']);
    const b = instance(prefix, ['u1', 'u2']);
    await Promise.all([a.sharing.ready(), b.sharing.ready()]);

    a.pool.disable('u1');
    expect(a.attempt(RATE_LIMITED)).toBe('u2');
    await waitFor(() => b.status('u1').state === 'disabled' && b.status('u2').state === 'cooling', {
      timeoutMs: WAIT_MS,
      what: 'the disable and the cooldown on b',
    });

    b.pool.enable('u1');
    b.pool.enable('u2');
    await waitFor(() => a.status('u1').state === 'healthy' && a.status('u2').state === 'healthy', {
      timeoutMs: WAIT_MS,
      what: 'the enables on a',
    });
    expect(a.status('u2').cooldownRemainingMs).toBe(0);
    expect(b.status('u1').state).toBe('healthy');
  });

  it('loads the current cooldown and disable into an instance that starts later', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['u1', 'u2']);
    await a.sharing.ready();
    expect(a.attempt(RATE_LIMITED)).toBe('u1');
    a.pool.disable('u2');
    await waitFor(async () => (await shared.hget(`${prefix}pool:state:u2`, 'disabled')) === '1', {
      timeoutMs: WAIT_MS,
      what: 'the state in Redis',
    });
    const ttlMs = await shared.pttl(`${prefix}pool:state:u1`);
    expect(ttlMs).toBeGreaterThan(0);
    expect(ttlMs).toBeLessThanOrEqual(86_400_000);

    const c = instance(prefix, ['u1', 'u2']);
    await c.sharing.ready();
    expect(c.status('u1').state).toBe('cooling');
    expect(Math.abs(c.status('u1').cooldownRemainingMs - a.status('u1').cooldownRemainingMs)).toBeLessThan(
      1_000,
    );
    expect(c.status('u2').state).toBe('disabled');
    expect(refusal(() => c.pool.acquire(ctx)).code).toBe('no_upstream_available');
  });

  it('holds a daily cap of 10 across both instances', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['capped'], { upstream: { dailyRequestCap: 10 } });
    const b = instance(prefix, ['capped'], { upstream: { dailyRequestCap: 10 } });
    await Promise.all([a.sharing.ready(), b.sharing.ready()]);

    for (let i = 0; i < 10; i++) (i % 2 === 0 ? a : b).attempt();
    // The documented staleness: each instance learns of the other's attempts once they reach Redis.
    await waitFor(() => a.status('capped').requestsToday === 10 && b.status('capped').requestsToday === 10, {
      timeoutMs: WAIT_MS,
      what: 'the counts to sync',
    });
    expect(refusal(() => a.pool.acquire(ctx)).code).toBe('no_upstream_available');
    expect(refusal(() => b.pool.acquire(ctx)).code).toBe('no_upstream_available');
    const day = utcDayNumber(Date.now());
    expect(await shared.get(`${prefix}pool:count:${day}:capped`)).toBe('10');
    const ttlMs = await shared.pttl(`${prefix}pool:count:${day}:capped`);
    expect(ttlMs).toBeGreaterThan(86_400_000);
    expect(ttlMs).toBeLessThanOrEqual(2 * 86_400_000);
  });

  it('loads today’s counts into an instance that starts later', async () => {
    const prefix = freshPrefix();
    const a = instance(prefix, ['capped'], { upstream: { dailyRequestCap: 3 } });
    await a.sharing.ready();
    a.attempt();
    a.attempt();
    a.attempt();
    const day = utcDayNumber(Date.now());
    await waitFor(async () => (await shared.get(`${prefix}pool:count:${day}:capped`)) === '3', {
      timeoutMs: WAIT_MS,
      what: 'the count in Redis',
    });
    const c = instance(prefix, ['capped'], { upstream: { dailyRequestCap: 3 } });
    await c.sharing.ready();
    expect(c.status('capped').requestsToday).toBe(3);
    expect(refusal(() => c.pool.acquire(ctx)).code).toBe('no_upstream_available');
  });
});

describe('sharePoolState without Redis', () => {
  it('serves on local state, logs the outage once and leaves no timer or socket after close', async () => {
    // Every earlier instance closed, and the shared client connected: from here on, what is made
    // is this test's.
    await Promise.all(opened.map((sharing) => sharing.close()));
    await waitFor(() => shared.status === 'ready', {
      timeoutMs: WAIT_MS,
      what: 'the shared client to connect',
    });
    const made = watchResources(['Timeout', 'TCPWRAP']);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    realProcess.on('unhandledRejection', onUnhandled);
    const logged: string[] = [];
    const logger: Logger = { error: (message) => void logged.push(message) };
    try {
      const a = instance(freshPrefix(), ['u1', 'u2'], {
        url: 'redis://127.0.0.1:1',
        commandTimeoutMs: 100,
        logger,
      });
      const error = await a.sharing.ready().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isStoreUnavailableError(error)).toBe(true);

      expect(a.attempt(RATE_LIMITED)).toBe('u1');
      expect(a.status('u1').state).toBe('cooling');
      expect([a.attempt(), a.attempt()]).toEqual(['u2', 'u2']);
      a.pool.disable('u2');
      expect(refusal(() => a.pool.acquire(ctx)).code).toBe('no_upstream_available');
      // Several reconnection attempts have failed by now; one line says so.
      expect(logged).toHaveLength(1);

      await Promise.all([a.sharing.close(), a.sharing.close()]);
      // No socket, no timer that keeps the process alive, and none of the library's own.
      const left = () =>
        made.live('TCPWRAP') +
        made.live('Timeout', { refed: true }) +
        made.live('Timeout', { from: LIB_CODE });
      await waitFor(() => left() === 0, {
        timeoutMs: WAIT_MS,
        what: 'the sockets and timers to go',
        detail: made.describe,
      });
      expect(unhandled).toEqual([]);
    } finally {
      made.stop();
      realProcess.off('unhandledRejection', onUnhandled);
    }
  });

  it('resyncs when Redis is back: what happened during the outage reaches the other instance', async () => {
    // A proxy to the real Redis that can cut every connection and refuse new ones.
    let down = false;
    const sockets = new Set<Socket>();
    const proxy: Server = createServer((client) => {
      if (down) {
        client.destroy();
        return;
      }
      const upstream = connect(redis.port, redis.host);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = proxy.address() as { port: number };
      const prefix = freshPrefix();
      const logged: string[] = [];
      const a = instance(prefix, ['u1', 'u2'], {
        url: `redis://127.0.0.1:${port}`,
        logger: { error: (message) => void logged.push(message) },
      });
      const b = instance(prefix, ['u1', 'u2']);
      await Promise.all([a.sharing.ready(), b.sharing.ready()]);

      down = true;
      for (const socket of sockets) socket.destroy();
      await waitFor(() => logged.length > 0, { timeoutMs: WAIT_MS, what: 'a to notice the outage' });
      expect(a.attempt(RATE_LIMITED)).toBe('u1');
      expect([a.attempt(), a.attempt()]).toEqual(['u2', 'u2']);

      down = false;
      await waitFor(() => b.status('u1').state === 'cooling' && b.status('u2').requestsToday === 2, {
        timeoutMs: WAIT_MS,
        what: 'b to hear of the cooldown and the attempts',
      });
      expect(b.status('u1').requestsToday).toBe(1);
      expect(logged).toHaveLength(1);
      await Promise.all([a.sharing.close(), b.sharing.close()]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});

describe('UpstreamPool hooks for sharing', () => {
  function fakePool() {
    const clock = { now: Date.parse('2026-03-28T12:00:00Z') };
    const pool = new UpstreamPool({
      upstreams: [
        { name: 'u1', url: 'https://u1.example.com/v1' },
        { name: 'u2', url: 'https://u2.example.com/v1' },
      ],
      cooldown: { baseMs: 1_000, failureThreshold: 1 },
      clock: () => clock.now,
    });
    const changes: UpstreamStateChange[] = [];
    const acquired: string[] = [];
    const stop = pool.observe({
      stateChanged: (change) => void changes.push(change),
      acquired: (endpoint) => void acquired.push(endpoint.name),
    });
    return { pool, clock, changes, acquired, stop };
  }
  const SERVER_ERROR: AttemptOutcome = {
    ok: false,
    category: 'server',
    status: 500,
    retryAfterMs: undefined,
  };

  it('reports each local transition and each acquire, and nothing once stopped', () => {
    const { pool, clock, changes, acquired, stop } = fakePool();
    const t0 = clock.now;
    pool.release(pool.acquire(ctx), SERVER_ERROR);
    clock.now += 1_000;
    pool.release(pool.acquire(ctx), OK); // u2, healthy all along: no transition
    pool.release(pool.acquire(ctx), OK); // u1's probe heals it
    pool.disable('u2');
    pool.enable('u2');
    expect(
      changes.map(({ name, kind, cooldownUntilMs, halfOpen }) => [name, kind, cooldownUntilMs, halfOpen]),
    ).toEqual([
      ['u1', 'cooling', t0 + 1_000, true],
      ['u1', 'healthy', t0 + 1_000, false],
      ['u2', 'disabled', 0, false],
      ['u2', 'enabled', 0, false],
    ]);
    expect(acquired).toEqual(['u1', 'u2', 'u1']);
    stop();
    stop();
    pool.release(pool.acquire(ctx), RATE_LIMITED);
    expect(changes).toHaveLength(4);
  });

  it('keeps serving when an observer throws', () => {
    const { pool } = fakePool();
    pool.observe({
      stateChanged: () => {
        throw new Error('observer bug');
      },
      acquired: () => {
        throw new Error('observer bug');
      },
    });
    const endpoint = pool.acquire(ctx);
    expect(() => pool.release(endpoint, RATE_LIMITED)).not.toThrow();
    expect(pool.status()[0]!.state).toBe('cooling');
  });

  it('applies shared state without reporting it: later cooldowns extend, a reset enables', () => {
    const { pool, clock, changes } = fakePool();
    const shared = { reset: false, disabled: false, cooldownUntilMs: clock.now + 5_000, halfOpen: false };
    expect(pool.applySharedState('u1', shared)).toBe(true);
    expect(pool.applySharedState('u1', { ...shared, cooldownUntilMs: clock.now + 1_000 })).toBe(true);
    expect(pool.status()[0]).toMatchObject({ state: 'cooling', cooldownRemainingMs: 5_000 });
    pool.applySharedState('u2', { ...shared, disabled: true, cooldownUntilMs: 0 });
    expect(pool.status()[1]!.state).toBe('disabled');
    pool.applySharedState('u2', { ...shared, reset: true, cooldownUntilMs: 0 });
    expect(pool.status()[1]!.state).toBe('healthy');
    expect(pool.applySharedState('nope', shared)).toBe(false);
    expect(changes).toEqual([]);
  });

  it('raises the daily count to a shared total, never lowers it, and starts a new day afresh', () => {
    const { pool, clock } = fakePool();
    const day = utcDayNumber(clock.now);
    pool.release(pool.acquire(ctx), OK);
    pool.applySharedCount('u1', day, 7);
    pool.applySharedCount('u1', day, 3);
    pool.applySharedCount('u1', day - 1, 50);
    expect(pool.status()[0]!.requestsToday).toBe(7);
    pool.applySharedCount('u1', day + 1, 2);
    clock.now += 86_400_000;
    expect(pool.status()[0]!.requestsToday).toBe(2);
  });
});

describe('sharePoolState options', () => {
  const pool = new UpstreamPool({ upstreams: [{ url: 'https://a.example.com/v1' }] });

  it.each([
    [{ url: REDIS_URL, prefix: '' }, /prefix/],
    [{ url: REDIS_URL, channel: '' }, /channel/],
    [{ url: REDIS_URL, commandTimeoutMs: 0 }, /commandTimeoutMs must be a positive integer, got 0/],
    [{ url: REDIS_URL, stateTtlMs: 1.5 }, /stateTtlMs/],
    [{ url: REDIS_URL, logger: {} }, /logger/],
    [{}, /redis .* or url/],
    [{ url: REDIS_URL, redis: shared }, /redis .* or url/],
    [{ url: 'http://127.0.0.1:6379' }, /url must be a redis/],
    [{ redis: {} }, /redis must be an ioredis client/],
  ])('refuses %p with a TypeError naming the option', (options, message) => {
    expect(() => sharePoolState(pool, options as SharePoolStateOptions)).toThrow(TypeError);
    expect(() => sharePoolState(pool, options as SharePoolStateOptions)).toThrow(message);
  });

  it('refuses something that is not a pool', () => {
    expect(() => sharePoolState({} as UpstreamPool, { url: REDIS_URL })).toThrow(
      /pool must be an UpstreamPool/,
    );
  });
});
