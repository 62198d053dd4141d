// Shares an UpstreamPool's health and daily counts between instances through Redis: local
// transitions are merged into one hash per upstream and published, attempts are INCRBY'd per day.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { StoreUnavailableError } from '../errors/store.js';
import { utcDayNumber } from '../keys/utc.js';
import { stderrLogger, type Logger } from '../log.js';
import { redactSecrets } from '../redact.js';
import {
  evalScript,
  openRedisClient,
  ownConnectionOptions,
  redisScript,
  withinTimeout,
  type RedisScript,
} from '../redis/connection.js';
import { OptionReader } from '../options.js';
import type { UpstreamPool, UpstreamPoolObserver, UpstreamStateChange } from './pool.js';
import type { UpstreamEndpoint } from './source.js';

/** Options of {@link sharePoolState}. Give `redis` or `url`, not both. */
export interface SharePoolStateOptions {
  /**
   * The host's ioredis client (standalone or Sentinel), used for commands; never closed. A
   * second connection for the subscription is made with `redis.duplicate()` and closed by
   * `close()`. Its `keyPrefix` is honoured for keys (channels are never prefixed by ioredis).
   */
  redis?: Redis;
  /**
   * A `redis://` or `rediss://` URL; two connections are then created (commands, subscription)
   * without offline queue, reconnecting with backoff up to 2 s, and closed by `close()`.
   */
  url?: string;
  /**
   * Prefix of every key written: `<prefix>pool:state:<upstream name>` (a hash) and
   * `<prefix>pool:count:<UTC day number>:<upstream name>` (a counter). Instances share state when
   * they share the prefix and the upstream names; give each pool of a host its own prefix.
   * @defaultValue `'llmux:'`
   */
  prefix?: string;
  /**
   * The pub/sub channel the changes go out on.
   * @defaultValue the client's `keyPrefix`, then `prefix`, then `pool:events` (`'llmux:pool:events'`)
   */
  channel?: string;
  /**
   * Longest wait for one Redis round trip (connecting included), in ms; past it the write is
   * kept and tried again later. `ready()` waits at most four of them.
   * @defaultValue 500
   */
  commandTimeoutMs?: number;
  /**
   * How long an upstream's shared state outlives its last change, in ms (never less than its
   * cooldown), so stale state vanishes: a disable older than this is forgotten by instances
   * that start later (instances that saw it keep it until an `enable`).
   * @defaultValue 86_400_000 (one day)
   */
  stateTtlMs?: number;
  /** Told once per outage that Redis cannot be reached. @defaultValue a JSON line on stderr */
  logger?: Logger;
}

/** What {@link sharePoolState} returns. */
export interface PoolStateSharing {
  /**
   * Resolves once this instance subscribed and loaded the shared state from Redis (cooldowns,
   * disables, today's counts). Rejects with a `StoreUnavailableError` when that did not happen
   * within four `commandTimeoutMs`; the pool works on local state meanwhile, and the sharing
   * keeps trying in the background.
   */
  ready(): Promise<void>;
  /**
   * Stops sharing: writes what is still pending (best effort, bounded by `commandTimeoutMs`),
   * unsubscribes, closes the connections it made and clears its timers. Idempotent; safe
   * concurrently and before `ready()`. The pool keeps working on local state.
   */
  close(): Promise<void>;
}

/** First wait before writing again after a failure; doubled up to MAX_RETRY_MS. */
const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;
/** A day's counter lives through that day and the next, then vanishes. */
const COUNT_TTL_MS = 2 * 86_400_000;
const OWNER = 'sharePoolState';
const READ: OptionReader = new OptionReader(OWNER);

/**
 * Merges a batch of one instance's changes into an upstream's hash and publishes the result.
 * `version` only grows (at least the caller's clock, so it keeps growing after the hash expired
 * or Redis lost it); `resetVersion` is the version of the last operator `enable`.
 * ARGV: nowMs, ttlMs, channel, instance, name, reset, disable, coolUntilMs, halfOpen, heal, healAtMs.
 */
const STATE_LUA = `
local key = KEYS[1]
local now = tonumber(ARGV[1])
local s = redis.call('HMGET', key, 'version', 'resetVersion', 'disabled', 'until', 'halfOpen')
local version = math.max((tonumber(s[1]) or 0) + 1, now)
local resetVersion = tonumber(s[2]) or 0
local disabled = tonumber(s[3]) or 0
local untilMs = tonumber(s[4]) or 0
local halfOpen = tonumber(s[5]) or 0
if ARGV[6] == '1' then
  resetVersion = version
  disabled = 0
  untilMs = 0
  halfOpen = 0
end
-- A probe that succeeded once the shared cooldown was over heals the trip behind it.
if ARGV[10] == '1' and untilMs <= tonumber(ARGV[11]) then halfOpen = 0 end
if ARGV[7] == '1' then disabled = 1 end
untilMs = math.max(untilMs, tonumber(ARGV[8]))
if ARGV[9] == '1' then halfOpen = 1 end
local function int(n) return string.format('%.0f', n) end
local reply = { int(version), int(resetVersion), int(disabled), int(untilMs), int(halfOpen) }
redis.call('HSET', key, 'version', reply[1], 'resetVersion', reply[2], 'disabled', reply[3],
  'until', reply[4], 'halfOpen', reply[5])
redis.call('PEXPIRE', key, int(math.max(tonumber(ARGV[2]), untilMs - now)))
redis.call('PUBLISH', ARGV[3], cjson.encode({ 's', ARGV[4], ARGV[5], reply[1], reply[2], reply[3], reply[4], reply[5] }))
return reply
`;

/** Adds a batch of attempts to a day's counter and publishes the total. ARGV: n, ttlMs, channel, instance, name, day. */
const COUNT_LUA = `
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({ 'c', ARGV[4], ARGV[5], ARGV[6], tostring(total) }))
return total
`;

const SCRIPTS = Object.freeze({ state: redisScript(STATE_LUA), count: redisScript(COUNT_LUA) });

/** The fields of an upstream's hash, in the order HMGET and the state script answer them. */
const STATE_FIELDS = ['version', 'resetVersion', 'disabled', 'until', 'halfOpen'] as const;

/** An upstream's shared state as stored: all five fields, as decimal strings. */
type StateReply = readonly [string, string, string, string, string];

/** The local changes of one upstream not yet written, folded in order into one batch. */
interface PendingChanges {
  /** An operator enable: everything before it is superseded. */
  reset: boolean;
  disable: boolean;
  /** Latest cooldown end among the changes; 0 when none cooled. */
  coolUntilMs: number;
  /** A trip not healed by a later success. */
  halfOpen: boolean;
  /** A half-open probe succeeded (at `healAtMs`) before any later trip. */
  heal: boolean;
  healAtMs: number;
}

/** Which shared version of an upstream this instance has applied. */
interface Seen {
  version: number;
  resetVersion: number;
}

/**
 * Makes the cooldowns, disables, enables and daily request counts of `pool` visible to every
 * instance that shares them through the same Redis (same `prefix`, same upstream names):
 *
 * - Each local health change (a cooldown with its end, a trip that leaves the upstream half-open,
 *   a disable, an operator's enable, a healed probe) is merged by a Lua script into the
 *   upstream's hash (absolute epoch-ms cooldown ends, expiring after `stateTtlMs`) and published.
 *   Other instances merge it into their pool: a cooldown extends a local one only if it ends
 *   later, a disable disables, an enable resets. After a shared trip each instance sends its own
 *   one half-open probe; the first that succeeds heals the upstream everywhere. Cooldown ends are
 *   absolute, so instances' clocks must agree (NTP).
 * - Each `acquire` counts locally at once, as without sharing, and is added to a counter per
 *   upstream per UTC day (by the pool's clock; kept two days). The totals Redis answers, and
 *   those other instances publish, raise the pool's counts, so `dailyRequestCap` holds across
 *   instances. Staleness: an instance learns of attempts elsewhere one Redis round trip and one
 *   pub/sub delivery after they start (writes are batched while one is in flight), so the
 *   cluster can exceed a cap by the attempts started on other instances in that window.
 * - `acquire` never waits for Redis: all Redis work is done by one background worker, and
 *   nothing on the request path awaits it.
 * - Redis unreachable or slow: the pool keeps working on local state alone; the outage is
 *   logged once; changes and counts are kept (one batch per upstream, counts of today and
 *   yesterday) and written when Redis answers again, and the state is then loaded anew. A write
 *   that timed out but ran anyway is written again, so a count can come out slightly high (never
 *   low). During an outage each instance enforces the caps on what it knows.
 *
 * Share a pool once. Keys: see {@link SharePoolStateOptions.prefix}.
 *
 * @throws TypeError for a bad option, naming it.
 * @example
 * import { sharePoolState } from 'llmux/redis';
 * const pool = upstreamPool({ upstreams: [{ name: 'a', url, apiKey: keyA, dailyRequestCap: 10_000 }] });
 * const sharing = sharePoolState(pool, { url: process.env.REDIS_URL });
 * await sharing.ready().catch(() => {}); // start on local state if Redis is down
 * process.on('SIGTERM', () => void sharing.close());
 */
export function sharePoolState(pool: UpstreamPool, options: SharePoolStateOptions): PoolStateSharing {
  return new PoolStateSharer(pool, options);
}

class PoolStateSharer implements PoolStateSharing, UpstreamPoolObserver {
  private readonly pool: UpstreamPool;
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly ownsClient: boolean;
  private readonly prefix: string;
  private readonly channel: string;
  private readonly timeoutMs: number;
  private readonly ttlMs: number;
  private readonly logger: Logger;
  /** Tells this instance's messages from the others'. */
  private readonly instance = randomBytes(9).toString('base64url');
  private readonly names: readonly string[];
  private readonly indexOfName: Map<string, number>;
  private readonly indexOfEndpoint: Map<UpstreamEndpoint, number>;
  private readonly seen: (Seen | undefined)[];
  private readonly pendingChanges: (PendingChanges | undefined)[];
  /** Attempts not yet added in Redis, per UTC day, per upstream index; at most two days. */
  private pendingCounts = new Map<number, number[]>();
  private subscribed = false;
  private needLoad = true;
  private loaded = false;
  private resolveLoaded!: () => void;
  private readonly firstLoad = new Promise<void>((resolve) => (this.resolveLoaded = resolve));
  private draining: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = MIN_RETRY_MS;
  private inOutage = false;
  private stopped = false;
  private closing: Promise<void> | undefined;
  private readonly unobserve: () => void;

  constructor(pool: UpstreamPool, options: SharePoolStateOptions) {
    if (
      typeof pool !== 'object' ||
      pool === null ||
      typeof pool.observe !== 'function' ||
      typeof pool.applySharedState !== 'function' ||
      typeof pool.applySharedCount !== 'function' ||
      !Array.isArray(pool.endpoints)
    ) {
      READ.fail('pool', 'an UpstreamPool', pool);
    }
    READ.options(options, true);
    // `null` has always meant the default prefix here.
    const prefix = READ.string('prefix', options.prefix ?? undefined, 'llmux:');
    if (options.channel !== undefined) READ.string('channel', options.channel);
    this.timeoutMs = READ.durationMs('commandTimeoutMs', options.commandTimeoutMs, 500);
    this.ttlMs = READ.positiveInteger('stateTtlMs', options.stateTtlMs, 86_400_000);
    const logger = READ.implementing<Logger>(
      'logger',
      options.logger ?? stderrLogger,
      ['error'],
      'an object with an error() method',
    );
    this.logger = logger;

    // The subscriber, too, reconnects without resubscribing: it subscribes anew once ready (see drain).
    const connection = { ...ownConnectionOptions(this.timeoutMs), autoResubscribe: false };
    const opened = openRedisClient(OWNER, options, connection, this.onConnectionError);
    this.client = opened.client;
    this.ownsClient = opened.ownsClient;
    // Subscribed only once ready (see drain), so the host's offline queue never matters here.
    this.subscriber = opened.ownsClient
      ? new Redis(options.url as string, connection)
      : opened.client.duplicate({ autoResubscribe: false });
    this.prefix = prefix;
    this.channel = options.channel ?? `${this.client.options.keyPrefix ?? ''}${prefix}pool:events`;

    this.pool = pool;
    this.names = pool.endpoints.map((e) => e.name);
    this.indexOfName = new Map(this.names.map((name, i) => [name, i]));
    this.indexOfEndpoint = new Map(pool.endpoints.map((e, i) => [e, i]));
    this.seen = this.names.map(() => undefined);
    this.pendingChanges = this.names.map(() => undefined);

    this.subscriber.on('error', this.onConnectionError);
    this.subscriber.on('ready', this.onSubscriberReady);
    this.subscriber.on('close', this.onSubscriberClose);
    this.subscriber.on('message', this.onMessage);
    this.client.on('ready', this.onClientReady);
    if (this.subscriber.status === 'wait') this.subscriber.connect().catch(ignore);
    this.unobserve = pool.observe(this);
    this.kick();
  }

  async ready(): Promise<void> {
    if (this.loaded) return;
    if (this.closing !== undefined) throw new StoreUnavailableError('the pool state sharing is closed');
    this.kick();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError('the shared upstream state could not be loaded from Redis')),
        4 * this.timeoutMs,
      );
      timer.unref();
    });
    try {
      await Promise.race([this.firstLoad, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** @internal The pool's hook: a local change, folded into the upstream's pending batch. */
  stateChanged(change: UpstreamStateChange): void {
    const index = this.indexOfName.get(change.name);
    if (index === undefined || this.stopped) return;
    let pending = this.pendingChanges[index];
    if (pending === undefined || change.kind === 'enabled') {
      pending = { reset: false, disable: false, coolUntilMs: 0, halfOpen: false, heal: false, healAtMs: 0 };
      this.pendingChanges[index] = pending;
    }
    switch (change.kind) {
      case 'enabled':
        pending.reset = true;
        break;
      case 'disabled':
        pending.disable = true;
        break;
      case 'cooling':
        pending.coolUntilMs = Math.max(pending.coolUntilMs, change.cooldownUntilMs);
        if (change.halfOpen) {
          pending.halfOpen = true;
          pending.heal = false;
        }
        break;
      case 'healthy':
        pending.halfOpen = false;
        pending.heal = true;
        pending.healAtMs = change.atMs;
        break;
    }
    this.kick();
  }

  /** @internal The pool's hook, on the hot path: one more attempt to add to the day's counter. */
  acquired(endpoint: UpstreamEndpoint, day: number): void {
    const index = this.indexOfEndpoint.get(endpoint);
    if (index === undefined || this.stopped) return;
    const counts = this.pendingCounts.get(day) ?? this.countsOf(day);
    if (counts === undefined) return;
    counts[index]!++;
    this.kick();
  }

  /** The pending counts of `day`, created if needed; undefined for a day too old to keep. */
  private countsOf(day: number): number[] | undefined {
    let counts = this.pendingCounts.get(day);
    if (counts !== undefined) return counts;
    let newest = day;
    for (const d of this.pendingCounts.keys()) newest = Math.max(newest, d);
    if (day < newest - 1) return undefined;
    // A day's counter expires after two: older pending counts would be written for nothing.
    for (const d of this.pendingCounts.keys()) if (d < newest - 1) this.pendingCounts.delete(d);
    counts = this.names.map(() => 0);
    this.pendingCounts.set(day, counts);
    return counts;
  }

  private readonly onClientReady = (): void => {
    this.resume();
  };

  private readonly onSubscriberReady = (): void => {
    // A new connection has no subscription, and messages were missed meanwhile.
    this.subscribed = false;
    this.resume();
  };

  private readonly onSubscriberClose = (): void => {
    this.subscribed = false;
  };

  /** Connection errors surface as one outage report; ioredis reconnects by itself. */
  private readonly onConnectionError = (err: unknown): void => {
    this.reportOutage(err);
  };

  private readonly onRetry = (): void => {
    this.retryTimer = undefined;
    this.kick();
  };

  private readonly onMessage = (channel: string, message: string): void => {
    if (channel !== this.channel || this.stopped) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return; // not ours
    }
    if (!Array.isArray(parsed) || parsed[1] === this.instance || typeof parsed[2] !== 'string') return;
    const index = this.indexOfName.get(parsed[2]);
    if (index === undefined) return;
    if (parsed[0] === 's' && parsed.length === 8) {
      this.applyState(index, parsed.slice(3) as unknown as StateReply, false);
    } else if (parsed[0] === 'c' && parsed.length === 5) {
      this.applyCount(index, Number(parsed[3]), Number(parsed[4]));
    }
  };

  /** Redis is back (or a connection is): load anew and write what waited. */
  private resume(): void {
    this.needLoad = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryDelayMs = MIN_RETRY_MS;
    this.kick();
  }

  /** Starts the worker when there is work and Redis is ready; a no-op while it runs. */
  private kick(): void {
    if (this.draining !== undefined || this.stopped || this.retryTimer !== undefined) return;
    if (!this.hasWork()) return;
    if (!this.connected()) {
      // A lazy client connects on demand; its 'ready' kicks again.
      if (this.client.status === 'wait') this.client.connect().catch(ignore);
      return;
    }
    this.draining = this.drain();
  }

  private hasWork(): boolean {
    if (!this.subscribed || this.needLoad || this.pendingCounts.size > 0) return true;
    for (const pending of this.pendingChanges) if (pending !== undefined) return true;
    return false;
  }

  private connected(): boolean {
    return this.client.status === 'ready' && this.subscriber.status === 'ready';
  }

  /** The one worker: subscribe, write changes, write counts, load; until nothing is left. */
  private async drain(): Promise<void> {
    try {
      while (!this.stopped && this.hasWork() && this.connected()) {
        if (!this.subscribed) {
          await this.bounded(this.subscriber.subscribe(this.channel));
          this.subscribed = true;
          this.needLoad = true;
        }
        await this.writeChanges();
        await this.writeCounts();
        if (this.needLoad) {
          this.needLoad = false;
          try {
            await this.load();
          } catch (err) {
            this.needLoad = true;
            throw err;
          }
        }
      }
      if (this.connected()) {
        // Everything went through: a later failure is a new outage, worth a line of its own.
        this.inOutage = false;
        this.retryDelayMs = MIN_RETRY_MS;
      }
    } catch (err) {
      this.reportOutage(err);
      if (!this.stopped) {
        this.retryTimer = setTimeout(this.onRetry, this.retryDelayMs);
        this.retryTimer.unref();
        this.retryDelayMs = Math.min(this.retryDelayMs * 2, MAX_RETRY_MS);
      }
    } finally {
      this.draining = undefined;
    }
  }

  private async writeChanges(): Promise<void> {
    const batch: [number, PendingChanges][] = [];
    for (let i = 0; i < this.pendingChanges.length; i++) {
      const pending = this.pendingChanges[i];
      if (pending === undefined) continue;
      batch.push([i, pending]);
      this.pendingChanges[i] = undefined;
    }
    if (batch.length === 0) return;
    const nowMs = this.pool.now();
    const results = await Promise.allSettled(
      batch.map(([i, p]) =>
        this.bounded(
          this.run(SCRIPTS.state, this.stateKey(i), [
            String(nowMs),
            String(this.ttlMs),
            this.channel,
            this.instance,
            this.names[i]!,
            flag(p.reset),
            flag(p.disable),
            String(p.coolUntilMs),
            flag(p.halfOpen),
            flag(p.heal),
            String(p.healAtMs),
          ]),
        ),
      ),
    );
    let failure: unknown;
    results.forEach((result, k) => {
      const [i, sent] = batch[k]!;
      if (result.status === 'fulfilled') {
        this.applyState(i, result.value as StateReply, sent.reset);
        return;
      }
      failure ??= result.reason;
      // Kept for the next try, before any change that came meanwhile.
      const later = this.pendingChanges[i];
      this.pendingChanges[i] = later === undefined ? sent : fold(sent, later);
    });
    if (failure !== undefined) throw failure;
  }

  private async writeCounts(): Promise<void> {
    if (this.pendingCounts.size === 0) return;
    const taken = this.pendingCounts;
    this.pendingCounts = new Map();
    const batch: [number, number, number][] = [];
    for (const [day, counts] of taken) {
      counts.forEach((n, i) => {
        if (n > 0) batch.push([day, i, n]);
      });
    }
    const results = await Promise.allSettled(
      batch.map(([day, i, n]) =>
        this.bounded(
          this.run(SCRIPTS.count, this.countKey(day, i), [
            String(n),
            String(COUNT_TTL_MS),
            this.channel,
            this.instance,
            this.names[i]!,
            String(day),
          ]),
        ),
      ),
    );
    let failure: unknown;
    results.forEach((result, k) => {
      const [day, i, n] = batch[k]!;
      if (result.status === 'fulfilled') {
        this.applyCount(i, day, Number(result.value));
        return;
      }
      failure ??= result.reason;
      const counts = this.countsOf(day);
      if (counts !== undefined) counts[i]! += n;
    });
    if (failure !== undefined) throw failure;
  }

  /** Reads every upstream's shared state and today's counts, and applies them. */
  private async load(): Promise<void> {
    const day = utcDayNumber(this.pool.now());
    const client = this.client;
    const replies = await this.bounded(
      Promise.all(
        this.names.map((_name, i) =>
          Promise.all([client.hmget(this.stateKey(i), ...STATE_FIELDS), client.get(this.countKey(day, i))]),
        ),
      ),
    );
    replies.forEach(([state, count], i) => {
      if (state.every((field) => field !== null)) this.applyState(i, state as unknown as StateReply, false);
      if (count !== null) this.applyCount(i, day, Number(count));
    });
    this.inOutage = false;
    if (!this.loaded) {
      this.loaded = true;
      this.resolveLoaded();
    }
  }

  /**
   * Applies a shared state newer than the one last applied. `ownReset`: this instance's own
   * enable, already applied here, so the reset it carries must not reset local state again.
   */
  private applyState(index: number, reply: StateReply, ownReset: boolean): void {
    const version = Number(reply[0]);
    const resetVersion = Number(reply[1]);
    if (!Number.isFinite(version) || !Number.isFinite(resetVersion)) return;
    const seen = this.seen[index];
    if (seen !== undefined && version <= seen.version) return;
    // Seen for the first time, only a message that is itself an enable is known to be newer
    // than the local state; a loaded enable may be older than it.
    const reset =
      !ownReset &&
      (seen === undefined ? version === resetVersion && this.loaded : resetVersion > seen.resetVersion);
    if (seen === undefined) this.seen[index] = { version, resetVersion };
    else {
      seen.version = version;
      seen.resetVersion = resetVersion;
    }
    this.pool.applySharedState(this.names[index]!, {
      reset,
      disabled: reply[2] === '1',
      cooldownUntilMs: Number(reply[3]) || 0,
      halfOpen: reply[4] === '1',
    });
  }

  /** Raises the pool's count to a cluster-wide total, plus this instance's attempts not in it yet. */
  private applyCount(index: number, day: number, total: number): void {
    if (!Number.isSafeInteger(day) || !Number.isFinite(total)) return;
    const pending = this.pendingCounts.get(day)?.[index] ?? 0;
    this.pool.applySharedCount(this.names[index]!, day, total + pending);
  }

  private reportOutage(err: unknown): void {
    if (this.inOutage || this.stopped) return;
    this.inOutage = true;
    try {
      this.logger.error('shared upstream state: Redis is unavailable, the pool runs on local state', {
        error: redactSecrets(err instanceof Error ? err.message : String(err)),
      });
    } catch {
      // A broken logger must not stop the sharing.
    }
  }

  private stateKey(index: number): string {
    return `${this.prefix}pool:state:${this.names[index]!}`;
  }

  private countKey(day: number, index: number): string {
    return `${this.prefix}pool:count:${day}:${this.names[index]!}`;
  }

  /** Runs `target` by SHA; a Redis that forgot it (restart, SCRIPT FLUSH) gets the source. */
  private run(target: RedisScript, key: string, args: string[]): Promise<unknown> {
    return evalScript(this.client, target, key, args, 'eval');
  }

  /**
   * `work`, or a {@link StoreUnavailableError} when it takes longer than `commandTimeoutMs`.
   * Other errors stay as Redis gave them: the outage report quotes them.
   */
  private bounded<T>(work: Promise<T>): Promise<T> {
    return withinTimeout(work, this.timeoutMs);
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    this.unobserve();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.draining;
    // Best effort: what this instance did last is worth telling the others.
    if (this.client.status === 'ready') {
      await this.writeChanges().catch(ignore);
      await this.writeCounts().catch(ignore);
    }
    const subscriber = this.subscriber;
    subscriber.off('ready', this.onSubscriberReady);
    subscriber.off('close', this.onSubscriberClose);
    subscriber.off('message', this.onMessage);
    subscriber.disconnect();
    subscriber.off('error', this.onConnectionError);
    this.client.off('ready', this.onClientReady);
    if (!this.ownsClient) return;
    const client = this.client;
    if (client.status === 'ready') await this.bounded(client.quit()).catch(ignore);
    client.disconnect();
    client.off('error', this.onConnectionError);
  }
}

/** Folds `later` changes onto `earlier` ones, as if both had been pending together. */
function fold(earlier: PendingChanges, later: PendingChanges): PendingChanges {
  if (later.reset) return later;
  return {
    reset: earlier.reset,
    disable: earlier.disable || later.disable,
    coolUntilMs: Math.max(earlier.coolUntilMs, later.coolUntilMs),
    halfOpen: later.heal ? later.halfOpen : earlier.halfOpen || later.halfOpen,
    heal: earlier.heal || later.heal,
    healAtMs: later.heal ? later.healAtMs : earlier.healAtMs,
  };
}

function flag(value: boolean): string {
  return value ? '1' : '0';
}

function ignore(): void {}
