// ClientCache against real undici pools and real node:http servers on 127.0.0.1.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import http from 'node:http';
import type { Pool } from 'undici';
import { ClientCache, type ClientCacheOptions } from '../lib/upstream/client-cache.js';
import { listen, waitFor, watchResources, type Listening } from './support/http.js';

interface Upstream {
  origin: string;
  server: Listening;
  /** Responses to `/slow` requests, held until the test ends them. */
  held: http.ServerResponse[];
  /** Resolves when the next `/slow` request arrives. */
  nextHeld: () => Promise<http.ServerResponse>;
}

async function startUpstream(): Promise<Upstream> {
  const held: http.ServerResponse[] = [];
  let notify: ((res: http.ServerResponse) => void) | undefined;
  const server = await listen((req, res) => {
    if (req.url === '/slow') {
      held.push(res);
      notify?.(res);
      return;
    }
    res.end('ok');
  });
  return {
    origin: server.url,
    server,
    held,
    nextHeld: () => new Promise((resolve) => (notify = resolve)),
  };
}

async function fetchText(pool: Pool, path = '/'): Promise<string> {
  const { body } = await pool.request({ path, method: 'GET' });
  return body.text();
}

describe('ClientCache', () => {
  let upstreams: Upstream[];
  let caches: ClientCache[];
  const a = () => upstreams[0]!.origin;
  const b = () => upstreams[1]!.origin;
  const c = () => upstreams[2]!.origin;

  function makeCache(options: ClientCacheOptions = {}): ClientCache {
    const cache = new ClientCache({ keepAliveTimeoutMs: 1_000, ...options });
    caches.push(cache);
    return cache;
  }

  beforeAll(async () => {
    upstreams = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
  });
  afterEach(async () => {
    for (const upstream of upstreams) for (const res of upstream.held.splice(0)) res.end();
    await Promise.all(caches.map((cache) => cache.close()));
  });
  afterAll(async () => {
    await Promise.all(upstreams.map(({ server }) => server.close()));
  });
  beforeEach(() => {
    caches = [];
  });

  it.each([
    [{ max: 0 }, 'ClientCache: max must be a positive integer, got 0'],
    [{ ttlMs: -1 }, 'ClientCache: ttlMs must be a positive integer, got -1'],
    [{ connectionsPerOrigin: 1.5 }, 'ClientCache: connectionsPerOrigin must be a positive integer, got 1.5'],
    [
      { keepAliveTimeoutMs: Number.NaN },
      'ClientCache: keepAliveTimeoutMs must be a positive integer, got NaN',
    ],
    [{ connectTimeoutMs: 0 }, 'ClientCache: connectTimeoutMs must be a positive integer, got 0'],
  ])('refuses %j with a TypeError', (options, message) => {
    expect(() => new ClientCache(options)).toThrow(new TypeError(message));
  });

  it('resolves the documented defaults', () => {
    expect(new ClientCache().settings).toEqual({
      max: 64,
      ttlMs: 300_000,
      connectionsPerOrigin: 4096,
      keepAliveTimeoutMs: 30_000,
      connectTimeoutMs: 10_000,
    });
  });

  it('reuses one pool per origin', async () => {
    const cache = makeCache();
    const pool = cache.get(a());
    expect(cache.get(a())).toBe(pool);
    expect(cache.get(b())).not.toBe(pool);
    expect(cache.size).toBe(2);
    expect(await fetchText(cache.get(a()))).toBe('ok');
    expect(cache.get(a())).toBe(pool);
  });

  it('evicts the least recently used pool past max and closes it', async () => {
    const cache = makeCache({ max: 2 });
    const poolA = cache.get(a());
    const poolB = cache.get(b());
    cache.get(a()); // a is now the most recently used
    const poolC = cache.get(c());
    expect(cache.size).toBe(2);
    expect(poolB.closed).toBe(true);
    expect(poolA.closed).toBe(false);
    expect(poolC.closed).toBe(false);
    await poolB.close(); // waits for the close the eviction started
    expect(poolB.destroyed).toBe(true);
    expect(cache.get(a())).toBe(poolA);
    const newB = cache.get(b());
    expect(newB).not.toBe(poolB);
    expect(await fetchText(newB)).toBe('ok');
  });

  it('lets an evicted pool finish its in-flight request before it closes', async () => {
    const cache = makeCache({ max: 1 });
    const pool = cache.get(a());
    const arrived = upstreams[0]!.nextHeld();
    const inFlight = pool.request({ path: '/slow', method: 'GET' });
    const held = await arrived;
    cache.get(b()); // evicts a's pool while its request is in flight
    expect(pool.closed).toBe(true);
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(pool.destroyed).toBe(false);
    held.end('done');
    const { statusCode, body } = await inFlight;
    expect(statusCode).toBe(200);
    expect(await body.text()).toBe('done');
    await pool.close();
    expect(pool.destroyed).toBe(true);
  });

  it('expires a pool unused for ttlMs, refreshing the TTL on every get', async () => {
    const clock = { now: 1_000 }; // lru-cache reads a start time of 0 as "no TTL"
    const cache = makeCache({ ttlMs: 10_000, clock: () => clock.now });
    const pool = cache.get(a());
    clock.now = 9_000;
    expect(cache.get(a())).toBe(pool); // refreshed: now expires after 19_000
    clock.now = 18_000;
    cache.get(b());
    expect(pool.closed).toBe(false);
    clock.now = 19_001;
    cache.get(b()); // the lazy purge on get closes the stale pool of a
    expect(pool.closed).toBe(true);
    expect(cache.size).toBe(1);
    await pool.close();
    expect(pool.destroyed).toBe(true);
    const fresh = cache.get(a());
    expect(fresh).not.toBe(pool);
    expect(await fetchText(fresh)).toBe('ok');
  });

  it('replaces an expired pool on get even before the lazy purge runs', () => {
    const clock = { now: 1_000 };
    const cache = makeCache({ ttlMs: 10_000, clock: () => clock.now });
    const pool = cache.get(a());
    clock.now = 11_001;
    const fresh = cache.get(a());
    expect(fresh).not.toBe(pool);
    expect(pool.closed).toBe(true);
  });

  it('closes every pool; close() twice or concurrently returns the same promise', async () => {
    const cache = makeCache();
    const pools = [cache.get(a()), cache.get(b())];
    await Promise.all(pools.map((pool) => fetchText(pool)));
    const first = cache.close();
    const second = cache.close();
    expect(second).toBe(first);
    await Promise.all([first, second]);
    expect(pools.every((pool) => pool.destroyed)).toBe(true);
    expect(cache.size).toBe(0);
    await expect(cache.close()).resolves.toBeUndefined();
    expect(() => cache.get(a())).toThrow('ClientCache is closed');
  });

  it('waits in close() for pools evicted earlier that are still draining', async () => {
    const cache = makeCache({ max: 1 });
    const pool = cache.get(a());
    const arrived = upstreams[0]!.nextHeld();
    const inFlight = pool.request({ path: '/slow', method: 'GET' });
    const held = await arrived;
    cache.get(b());
    let closed = false;
    const closing = cache.close().then(() => (closed = true));
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    held.end('done');
    await (await inFlight).body.text();
    await closing;
    expect(pool.destroyed).toBe(true);
  });

  it('starts no timer of its own, and leaves no handle open once closed', async () => {
    // Only the sockets and timers made from here on count, not those of earlier tests.
    const made = watchResources(['TCPWRAP', 'Timeout']);
    const setTimeoutSpy = jest.spyOn(globalThis, 'setTimeout');
    const setIntervalSpy = jest.spyOn(globalThis, 'setInterval');
    let cache: ClientCache;
    try {
      try {
        // Each clock reading moves 1 s on, so every get also runs the lazy purge.
        let now = 1_000;
        cache = makeCache({ max: 2, ttlMs: 10_000, clock: () => (now += 1_000) });
        for (const origin of [a(), a(), b(), b(), c(), c(), a(), a()]) cache.get(origin);
        now += 20_000;
        cache.get(b()); // a and c expire here
        expect(setTimeoutSpy).not.toHaveBeenCalled();
        expect(setIntervalSpy).not.toHaveBeenCalled();
      } finally {
        setTimeoutSpy.mockRestore();
        setIntervalSpy.mockRestore();
      }
      await Promise.all([fetchText(cache.get(a())), fetchText(cache.get(b()))]);
      expect(made.live('TCPWRAP')).toBeGreaterThan(0);
      // undici arms unref'd timers of its own for its sockets; none may keep the process alive.
      expect(made.live('Timeout', { refed: true })).toBe(0);
      await cache.close();
      // Both ends of every upstream socket are gone, and no timer keeps the process alive; Node
      // reports a closed handle or a lapsed timer a turn or more late, hence the bounded waits.
      await waitFor(() => made.live('TCPWRAP') === 0, {
        what: 'both ends of every upstream socket to close',
        detail: made.describe,
      });
      await waitFor(() => made.live('Timeout', { refed: true }) === 0, {
        what: 'no timer to keep the process alive',
        detail: made.describe,
      });
    } finally {
      made.stop();
    }
  });
});
