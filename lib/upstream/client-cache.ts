// Upstream connection pools, one per origin, in a bounded LRU cache with a sliding TTL. A pool
// that is evicted or expires is closed gracefully: its in-flight requests finish first.
import { OptionReader } from '../options.js';
import { LRUCache } from 'lru-cache';
import { Pool } from 'undici';

/** Options of {@link ClientCache}. */
export interface ClientCacheOptions {
  /** Most origins with a pool at once; past it the least recently used pool is closed. Default 64. */
  max?: number;
  /**
   * A pool unused for this long, in ms, expires and is closed. Sliding: every `get` refreshes it.
   * Default 300_000 (5 minutes).
   */
  ttlMs?: number;
  /**
   * Most sockets per upstream origin: each open stream holds one, and an attempt past the limit
   * waits for a socket to free. Bound concurrency with the gate (`concurrencyGate`), not here.
   * Default 4096.
   */
  connectionsPerOrigin?: number;
  /** How long an idle upstream socket is kept for reuse, in ms. Default 30_000. */
  keepAliveTimeoutMs?: number;
  /** TCP connect timeout in ms. Default 10_000. */
  connectTimeoutMs?: number;
  /**
   * The monotonic clock for the TTL, in ms; injectable for tests. It must return positive values
   * (lru-cache reads a start time of 0 as "no TTL"). Default `performance.now()`.
   */
  clock?: () => number;
}

/** The resolved {@link ClientCacheOptions} (without the clock). */
export interface ClientCacheSettings {
  readonly max: number;
  readonly ttlMs: number;
  readonly connectionsPerOrigin: number;
  readonly keepAliveTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** Fills defaults and validates; throws a TypeError naming a bad option. */
export function resolveClientCacheOptions(
  options: ClientCacheOptions = {},
  owner = 'ClientCache',
): ClientCacheSettings {
  const read = new OptionReader(owner);
  read.options(options);
  return Object.freeze({
    max: read.positiveInteger('max', options.max, 64),
    ttlMs: read.durationMs('ttlMs', options.ttlMs, 300_000),
    connectionsPerOrigin: read.positiveInteger('connectionsPerOrigin', options.connectionsPerOrigin, 4096),
    keepAliveTimeoutMs: read.durationMs('keepAliveTimeoutMs', options.keepAliveTimeoutMs, 30_000),
    connectTimeoutMs: read.durationMs('connectTimeoutMs', options.connectTimeoutMs, 10_000),
  });
}

/**
 * Keeps one undici {@link Pool} per upstream origin, at most `max` of them, each dropped after
 * `ttlMs` without use. A dropped pool (evicted, expired or closed with the cache) is closed
 * gracefully: undici lets its in-flight requests finish, then closes its sockets.
 *
 * No timer is started: stale pools are purged lazily on `get`, at most once per second (or per
 * `ttlMs` when shorter). A pool left stale while nothing calls `get` holds no socket past its
 * keep-alive timeout, so nothing keeps the process alive.
 *
 * Drop-in for `UpstreamClients` (same `get` and `close`). Take the pool with `get` right before
 * each request and dispatch on it at once; do not keep it across awaits, since a pool that is
 * evicted meanwhile refuses new requests.
 *
 * @example
 * const clients = new ClientCache({ max: 64, ttlMs: 300_000, connectionsPerOrigin: 128 });
 * const { statusCode, body } = await clients.get('https://api.openai.com').request({
 *   path: '/v1/models', method: 'GET', headers: { authorization: `Bearer ${key}` },
 * });
 * // on shutdown:
 * await clients.close();
 */
export class ClientCache {
  /** The resolved settings. */
  readonly settings: ClientCacheSettings;
  private readonly cache: LRUCache<string, Pool>;
  private readonly poolOptions: Pool.Options;
  private readonly clock: () => number;
  private readonly purgeIntervalMs: number;
  private lastPurgeMs: number;
  /** Closes of dropped pools still waiting for their in-flight requests. */
  private readonly closingPools = new Set<Promise<void>>();
  private closing: Promise<void> | undefined = undefined;

  constructor(options: ClientCacheOptions = {}) {
    this.settings = resolveClientCacheOptions(options);
    const clock = options.clock ?? (() => performance.now());
    if (typeof clock !== 'function') {
      throw new TypeError(`ClientCache: clock must be a function, got ${String(clock)}`);
    }
    this.clock = clock;
    this.poolOptions = {
      connections: this.settings.connectionsPerOrigin,
      pipelining: 1,
      keepAliveTimeout: this.settings.keepAliveTimeoutMs,
      connectTimeout: this.settings.connectTimeoutMs,
    };
    this.purgeIntervalMs = Math.min(this.settings.ttlMs, 1_000);
    this.lastPurgeMs = clock();
    this.cache = new LRUCache<string, Pool>({
      max: this.settings.max,
      ttl: this.settings.ttlMs,
      updateAgeOnGet: true,
      // No timers: no per-entry purge timer, and no timer to cache the clock reading either.
      ttlAutopurge: false,
      ttlResolution: 0,
      perf: { now: clock },
      dispose: (pool) => this.closePool(pool),
    });
  }

  /** How many pools the cache holds (stale ones not yet purged included). */
  get size(): number {
    return this.cache.size;
  }

  /**
   * The pool for `origin` (for example `https://api.openai.com`), created on first use; refreshes
   * its TTL and makes it the most recently used. Throws once {@link ClientCache.close} was called.
   */
  get(origin: string): Pool {
    if (this.closing !== undefined) throw new Error('ClientCache is closed');
    const now = this.clock();
    if (now - this.lastPurgeMs >= this.purgeIntervalMs) {
      this.lastPurgeMs = now;
      this.cache.purgeStale();
    }
    let pool = this.cache.get(origin);
    if (pool === undefined) {
      pool = new Pool(origin, this.poolOptions);
      this.cache.set(origin, pool);
    }
    return pool;
  }

  /**
   * Closes every pool, each after its in-flight requests end, and resolves when all are closed
   * (pools dropped earlier and still draining included). May be called twice or concurrently:
   * every call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    this.cache.clear();
    await Promise.all(this.closingPools);
  }

  private closePool(pool: Pool): void {
    if (pool.destroyed) return;
    // close() rejects only for a pool already destroyed, which holds nothing left to close.
    const closing: Promise<void> = pool
      .close()
      .catch(() => undefined)
      .finally(() => this.closingPools.delete(closing));
    this.closingPools.add(closing);
  }
}
