// A counting semaphore whose permits live in Redis, shared by every instance of the host app: held
// permits are leases renewed while the work runs, so a crashed instance's permits come back alone.
import { DROP_WAITER, QueuedWaiter } from './waiter.js';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isStoreUnavailableError } from '../errors/store.js';
import {
  ConnectionWait,
  evalScript,
  openRedisClient,
  ownConnectionOptions,
  reconnectDelayMs,
  redisScript,
  toStoreError,
  withinTimeout,
  type RedisScript,
} from '../redis/connection.js';
import { OptionReader } from '../options.js';
import { STORE_ERROR_MODES } from '../redis/options.js';
import { ACQUIRE_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT } from './redis-gate-scripts.js';
import { GateRejection, resolveSemaphoreOptions, type GateRejectionCode } from './semaphore.js';
import { WaiterList } from './waiter-list.js';

/** Options of {@link RedisSemaphore}. Give `redis` or `url`, not both. */
export interface RedisSemaphoreOptions {
  /**
   * The host's ioredis client (standalone or Sentinel; not a `Cluster`). It is never closed by
   * the gate. For fast failure while Redis is down, create it with `enableOfflineQueue: false`;
   * every call is bounded by `commandTimeoutMs` either way. Its `keyPrefix` is honoured. The gate
   * also opens one subscriber connection of its own (`duplicate()`), closed by `close()`.
   */
  redis?: Redis;
  /**
   * A `redis://` or `rediss://` URL; the gate then creates its own client (no offline queue,
   * reconnecting with backoff up to 2 s) and quits it on `close()`.
   */
  url?: string;
  /**
   * The gate's name: instances that give the same `prefix` and `name` share one set of permits.
   * @defaultValue `'default'`
   */
  name?: string;
  /**
   * Permits held at once across every instance. Positive integer; required, and the same on
   * every instance (each admits while fewer than its own `max` are held).
   */
  max: number;
  /**
   * Requests that may wait on this instance once Redis said every permit is held; past it:
   * `queue_full`. Non-negative integer. (Newcomers whose first try is still on its way to Redis
   * are bounded apart, by `max`.)
   * @defaultValue `2 * max`
   */
  maxQueue?: number;
  /**
   * Longest wait for a permit, in ms; past it: `queue_timeout`. Positive integer, or `Infinity`.
   * @defaultValue 30_000
   */
  queueTimeoutMs?: number;
  /**
   * How long a permit stays held without renewal, in ms: the time a crashed instance's permits
   * take to come back. Held permits are renewed every `leaseMs / 3` by one timer per gate, so a
   * request may hold its permit for any length of time. Keep it several times
   * `commandTimeoutMs`. Integer of at least 30.
   * @defaultValue 30_000
   */
  leaseMs?: number;
  /**
   * The longest pause between two looks at Redis while requests wait and no release is
   * announced (the subscriber connection is down, or a lease ran out), in ms. Polling starts at
   * 16 ms and doubles up to it. Positive integer.
   * @defaultValue 250
   */
  pollMs?: number;
  /**
   * Prefix of the gate's key and channel (after the client's own `keyPrefix`).
   * @defaultValue `'llmux:'`
   */
  prefix?: string;
  /**
   * Longest wait for one Redis round trip (connecting included), in ms; past it the call fails
   * as `store_unavailable`. Positive integer.
   * @defaultValue 500
   */
  commandTimeoutMs?: number;
  /**
   * What a request gets while Redis cannot be reached: `'fail-closed'` rejects it with a
   * {@link StoreUnavailableError} (503 `store_unavailable`); `'fail-open'` grants it a bypass
   * permit (no limit holds for it; counted in `bypassed`). Waiters queued when a call fails get
   * the same answer at once.
   * @defaultValue `'fail-closed'`
   */
  onStoreError?: 'fail-closed' | 'fail-open';
}

/** Counters of a {@link RedisSemaphore}. */
export interface RedisSemaphoreStats {
  /** Permits this instance holds. */
  inFlight: number;
  /** Requests waiting on this instance. */
  queued: number;
  /** Permits held across all instances, as of this instance's last call to Redis. */
  held: number;
  /** Requests let through without a permit (`fail-open` while Redis was unreachable), in total. */
  bypassed: number;
  /** Held permits whose lease ran out and could not be taken back (renewals failed), in total. */
  lapsed: number;
}

/** The default lease of a permit: 30 s. */
export const DEFAULT_LEASE_MS = 30_000;
/** The default longest pause between polls: 250 ms. */
export const DEFAULT_POLL_MS = 250;

const FIRST_POLL_MS = 16;
const MIN_LEASE_MS = 30;
/** Most waiters tried in one round trip. */
const MAX_BATCH = 128;
const MIN_RETRY_AFTER_MS = 1_000;
const MAX_RETRY_AFTER_MS = 60_000;
const HOLD_AVERAGE_WEIGHT = 0.2;
const SCRIPTS = Object.freeze({
  acquire: redisScript(ACQUIRE_SCRIPT),
  release: redisScript(RELEASE_SCRIPT),
  renew: redisScript(RENEW_SCRIPT),
});

// Friend access between the semaphore, its permits and its waiters, kept off the public API.
const RETURN_PERMIT = Symbol('returnPermit');
const POLL = Symbol('poll');
const RENEW = Symbol('renew');

/**
 * The right to one permit of a {@link RedisSemaphore}. Release it exactly when the work ends;
 * releasing again is a no-op. A bypass permit (granted while failing open) holds nothing.
 */
export class RedisPermit {
  #owner: RedisSemaphore | undefined;
  /** The permit's member in Redis; `undefined` for a bypass permit. */
  readonly holderId: string | undefined;
  /** ms spent waiting before the permit was granted. */
  readonly waitedMs: number;
  /** `performance.now()` when the permit was granted. */
  readonly grantedAtMs: number;

  /** @internal Permits are made by {@link RedisSemaphore}; do not construct them. */
  constructor(
    owner: RedisSemaphore | undefined,
    holderId: string | undefined,
    waitedMs: number,
    grantedAtMs: number,
  ) {
    this.#owner = owner;
    this.holderId = holderId;
    this.waitedMs = waitedMs;
    this.grantedAtMs = grantedAtMs;
  }

  /** True for a permit granted without Redis (`onStoreError: 'fail-open'`). */
  get bypassed(): boolean {
    return this.holderId === undefined;
  }

  /** Gives the permit back (in Redis, announced to every instance). Idempotent. */
  release(): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    owner[RETURN_PERMIT](this);
  }
}

/** One queued `acquire`. */
class Waiter extends QueuedWaiter<Waiter, RedisPermit, Error> {
  /** The list the waiter is in: arriving (not yet refused once) or queued. */
  list: WaiterList<Waiter> | undefined = undefined;
}

function pollTick(semaphore: RedisSemaphore): void {
  semaphore[POLL]();
}

function renewTick(semaphore: RedisSemaphore): void {
  semaphore[RENEW]();
}

/**
 * A counting semaphore shared by every instance through Redis.
 *
 * - **Permits are leases.** Holders are a sorted set scored by lease expiry; taking one is one
 *   Lua script (drop expired holders, admit while fewer than `max` are held), giving one back
 *   another (which also publishes on the gate's channel). Expiries come from Redis's `TIME`
 *   inside the scripts, so the instances' clocks need not agree. One unref'd timer per gate
 *   renews all of this instance's holders every `leaseMs / 3` in one call, so a long stream keeps
 *   its permit while a crashed instance's permits come back after `leaseMs`.
 * - **Waiters queue locally**, and only the head of the queue is served: within an instance the
 *   order is FIFO. A release anywhere wakes every instance (pub/sub on a subscriber connection),
 *   with polling backing off up to `pollMs` as a fallback. **Across instances the order is
 *   best effort:** instances race for a freed permit, so a request on one may be served before an
 *   older one on another; nothing starves for long, since every instance tries on every release.
 * - A waiter that aborts or times out leaves at once (O(1)); each has one unref'd timer.
 * - Redis unreachable or slower than `commandTimeoutMs`: see `onStoreError`. Nothing throws from
 *   an event; ioredis reconnects by itself. A release that fails is not retried: the lease runs
 *   out instead. If renewals fail for a whole lease, this instance's permits lapse and other
 *   instances may take them: for that while more than `max` requests may run (counted in
 *   `lapsed` when they cannot be taken back).
 *
 * @example
 * const semaphore = new RedisSemaphore({ url: process.env.REDIS_URL, name: 'chat', max: 16 });
 * const permit = await semaphore.acquire(signal); // GateRejection or StoreUnavailableError
 * try {
 *   await work();
 * } finally {
 *   permit.release();
 * }
 */
export class RedisSemaphore {
  /** Permits held at once across every instance. */
  readonly max: number;
  /** Requests that may wait on this instance. */
  readonly maxQueue: number;
  /** Longest wait in ms (`Infinity`: no limit). */
  readonly queueTimeoutMs: number;
  /** Lease of a held permit, in ms. */
  readonly leaseMs: number;
  /** Longest pause between polls, in ms. */
  readonly pollMs: number;
  readonly #timeoutMs: number;
  readonly #failOpen: boolean;
  readonly #client: Redis;
  readonly #ownsClient: boolean;
  readonly #subscriber: Redis;
  /** The holder set, before the client's `keyPrefix` (ioredis adds it to script keys). */
  readonly #key: string;
  /** The release channel, in full (ioredis never prefixes channels). */
  readonly #channel: string;
  readonly #instanceId = randomBytes(9).toString('base64url');
  #holderCount = 0;
  /** Waiters not yet refused by a round: they may still be admitted without counting as queued. */
  readonly #arriving = new WaiterList<Waiter>();
  /** Waiters a round found no permit for; bounded by `maxQueue`. All stand before `#arriving`. */
  readonly #queued = new WaiterList<Waiter>();
  /** This instance's permits by holder id. */
  readonly #holders = new Map<string, RedisPermit>();
  #held = 0;
  #bypassed = 0;
  #lapsed = 0;
  #averageHoldMs: number | undefined = undefined;
  #pumpRun: Promise<void> | undefined = undefined;
  /** Set when a release may have happened while a round was running: run another. */
  #wake = false;
  #pollTimer: NodeJS.Timeout | undefined = undefined;
  #pollDelayMs = FIRST_POLL_MS;
  #renewTimer: NodeJS.Timeout | undefined = undefined;
  #renewing = false;
  #closed = false;
  #closing: Promise<void> | undefined = undefined;
  /** One wait for the client's connection, shared by every call that needs it. */
  readonly #connection: ConnectionWait;
  readonly #onMessage = (channel: string, message: string): void => {
    // Our own releases already woke us when their reply came.
    if (channel === this.#channel && message !== this.#instanceId) this.#wakeUp(true);
  };
  readonly #onSubscriberReady = (): void => {
    // After a reconnect, subscribe anew ourselves: ioredis' own resubscription leaves its promise
    // unhandled, so a close() while it is in flight was an unhandled rejection in the host.
    if (this.#subscribedOnce) this.#subscribe();
    this.#subscribedOnce = true;
    // Releases announced while the subscriber was away were missed: look now.
    this.#wakeUp(true);
  };
  /** Set at the subscriber's first `ready`: later ones are reconnects that must resubscribe. */
  #subscribedOnce = false;
  readonly #onClientError = (): void => {
    // Connection errors surface as `store_unavailable` on the calls they fail; ioredis
    // reconnects by itself. Listening keeps an error event from ever being unhandled.
  };

  /**
   * Throws a `TypeError` naming a bad option (see {@link RedisSemaphoreOptions}), prefixed with
   * `owner` (the factory the options were given to).
   */
  constructor(options: RedisSemaphoreOptions, owner = 'RedisSemaphore') {
    if (typeof options !== 'object' || options === null)
      throw new TypeError(`${owner}: options are required`);
    const settings = resolveSemaphoreOptions(
      { max: options.max, maxQueue: options.maxQueue, queueTimeoutMs: options.queueTimeoutMs },
      owner,
    );
    this.max = settings.max;
    this.maxQueue = settings.maxQueue;
    this.queueTimeoutMs = settings.queueTimeoutMs;
    const read = new OptionReader(owner);
    this.leaseMs = read.durationMs('leaseMs', options.leaseMs, DEFAULT_LEASE_MS);
    if (this.leaseMs < MIN_LEASE_MS) read.fail('leaseMs', `at least ${MIN_LEASE_MS}`, this.leaseMs);
    this.pollMs = read.durationMs('pollMs', options.pollMs, DEFAULT_POLL_MS);
    this.#timeoutMs = read.durationMs('commandTimeoutMs', options.commandTimeoutMs, 500);
    const name = read.string('name', options.name, 'default');
    const prefix = read.string('prefix', options.prefix, 'llmux:');
    this.#failOpen =
      read.oneOf('onStoreError', options.onStoreError, STORE_ERROR_MODES, 'fail-closed') === 'fail-open';

    const opened = openRedisClient(
      owner,
      options,
      ownConnectionOptions(this.#timeoutMs),
      this.#onClientError,
    );
    this.#client = opened.client;
    this.#ownsClient = opened.ownsClient;
    this.#connection = new ConnectionWait(this.#client);
    this.#key = `${prefix}gate:${name}`;
    this.#channel = `${this.#client.options.keyPrefix ?? ''}${this.#key}:released`;
    // The subscriber waits for its connection (offline queue on) and resubscribes after a
    // reconnect by itself; it only ever hears release announcements.
    this.#subscriber = this.#client.duplicate({
      autoResubscribe: false,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      disconnectTimeout: this.#timeoutMs,
      retryStrategy: reconnectDelayMs,
    });
    this.#subscriber.on('error', this.#onClientError);
    this.#subscriber.on('message', this.#onMessage);
    this.#subscriber.on('ready', this.#onSubscriberReady);
    this.#subscribe();
  }

  #subscribe(): void {
    this.#subscriber.subscribe(this.#channel).catch(() => {
      // Down or closing: polling covers until the connection (and its resubscription) is back.
    });
  }

  /** This instance's counters (fresh object). */
  stats(): RedisSemaphoreStats {
    return {
      inFlight: this.#holders.size,
      queued: this.#queued.length + this.#arriving.length,
      held: this.#held,
      bypassed: this.#bypassed,
      lapsed: this.#lapsed,
    };
  }

  /**
   * A permit, once Redis grants one to this request: requests on this instance are served in
   * FIFO order. Rejects with a {@link GateRejection} (`queue_full` when `maxQueue` requests wait
   * already or a refused newcomer finds the queue full, `queue_timeout` after `queueTimeoutMs`,
   * `aborted` when `signal` aborts first, `closed` when the semaphore is or gets closed), with a
   * {@link StoreUnavailableError} while Redis cannot be reached (fail-closed), or with the error
   * Redis answered for a fault (such as a foreign key under the gate's name). Fail-open resolves
   * with a bypass permit instead of the `StoreUnavailableError`.
   */
  acquire(signal?: AbortSignal): Promise<RedisPermit> {
    if (signal?.aborted) return Promise.reject(this.#rejection('aborted'));
    if (this.#closed) return Promise.reject(this.#rejection('closed'));
    const queued = this.#queued.length;
    // Newcomers not yet refused are bounded too: past `max` of them, no round can admit them all.
    if (
      (queued > 0 && queued >= this.maxQueue) ||
      queued + this.#arriving.length >= this.maxQueue + this.max
    ) {
      return Promise.reject(this.#rejection('queue_full'));
    }
    return new Promise<RedisPermit>((resolve, reject) => {
      const waiter = new Waiter(this, resolve, reject, signal, performance.now());
      waiter.list = this.#arriving;
      this.#arriving.push(waiter);
      waiter.expireAfter(this.queueTimeoutMs);
      signal?.addEventListener('abort', waiter);
      // A round already running tries it if it reaches it, or counts it as queued.
      if (this.#pumpRun === undefined) this.#startPump();
    });
  }

  /**
   * Rejects every waiter with `closed` and refuses new ones; gives this instance's permits back
   * in Redis (requests still running keep going, no longer counted), and closes the subscriber
   * connection and a client the semaphore created. Idempotent; safe to call concurrently.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    this.#clearPoll();
    this.#stopRenewing();
    this.#failWaiters(this.#rejection('closed'));
    // A round in flight may still be granted permits: let it end, so they are given back below.
    if (this.#pumpRun !== undefined) await this.#pumpRun;
    const holderIds = [...this.#holders.keys()];
    this.#holders.clear();
    if (holderIds.length > 0) {
      try {
        await this.#exec(SCRIPTS.release, [this.#channel, this.#instanceId, ...holderIds]);
      } catch {
        // Unreachable: the leases run out by themselves.
      }
    }
    this.#connection.stop('the distributed gate is closed', this.#ownsClient);
    const subscriber = this.#subscriber;
    subscriber.off('message', this.#onMessage);
    subscriber.off('ready', this.#onSubscriberReady);
    subscriber.disconnect();
    subscriber.off('error', this.#onClientError);
    if (this.#ownsClient) {
      const client = this.#client;
      if (client.status === 'ready') {
        try {
          await this.#bounded(client.quit());
        } catch {
          // Quitting is a courtesy; disconnecting below ends the connection regardless.
        }
      }
      client.disconnect();
      client.off('error', this.#onClientError);
    }
  }

  /** @internal Called by {@link RedisPermit.release}, once per permit. */
  [RETURN_PERMIT](permit: RedisPermit): void {
    const heldMs = performance.now() - permit.grantedAtMs;
    const average = this.#averageHoldMs;
    this.#averageHoldMs = average === undefined ? heldMs : average + HOLD_AVERAGE_WEIGHT * (heldMs - average);
    const holderId = permit.holderId;
    // Not ours any more when `close()` already gave it back.
    if (holderId === undefined || !this.#holders.delete(holderId)) return;
    if (this.#holders.size === 0) this.#stopRenewing();
    this.#exec(SCRIPTS.release, [this.#channel, this.#instanceId, holderId]).then(
      (reply) => {
        this.#held = Number((reply as number[])[1]);
        this.#wakeUp(true);
      },
      () => {
        // Unreachable: the lease runs out by itself, and polling finds the permit then.
      },
    );
  }

  /** @internal Takes a waiter out of the queue on abort or timeout; a no-op if it already left. */
  [DROP_WAITER](waiter: Waiter, code: 'aborted' | 'queue_timeout'): void {
    const list = waiter.list;
    if (list === undefined || !list.remove(waiter)) return;
    waiter.list = undefined;
    waiter.detach();
    waiter.reject(this.#rejection(code));
    if (this.#queued.length + this.#arriving.length === 0) this.#clearPoll();
  }

  /** @internal The poll timer fired. */
  [POLL](): void {
    this.#pollTimer = undefined;
    this.#wakeUp(false);
  }

  /** @internal The renewal timer fired: extend every lease this instance holds, in one call. */
  [RENEW](): void {
    if (this.#renewing || this.#holders.size === 0) return;
    this.#renewing = true;
    const args = [String(this.max), String(this.leaseMs), ...this.#holders.keys()];
    this.#exec(SCRIPTS.renew, args)
      .then(
        (reply) => {
          const [lost, held] = reply as number[];
          this.#lapsed += Number(lost);
          this.#held = Number(held);
        },
        () => {
          // Unreachable: the next tick tries again; leases last three ticks.
        },
      )
      .finally(() => {
        this.#renewing = false;
      });
  }

  /** A permit may have been freed: run a round now (or after the running one). */
  #wakeUp(announced: boolean): void {
    if (this.#closed || this.#queued.length + this.#arriving.length === 0) return;
    if (announced) this.#pollDelayMs = FIRST_POLL_MS;
    this.#clearPoll();
    if (this.#pumpRun !== undefined) this.#wake = true;
    else this.#startPump();
  }

  #startPump(): void {
    this.#pumpRun = this.#pump().finally(() => {
      this.#pumpRun = undefined;
    });
  }

  /** Rounds of "try the head of the queue" until it is empty, or Redis refuses and nothing woke us. */
  async #pump(): Promise<void> {
    try {
      for (;;) {
        const count = Math.min(this.#queued.length + this.#arriving.length, this.max, MAX_BATCH);
        if (this.#closed || count === 0) return;
        this.#wake = false;
        const holderIds: string[] = [];
        for (let i = 0; i < count; i++)
          holderIds.push(`${this.#instanceId}:${(++this.#holderCount).toString(36)}`);
        let reply: number[];
        try {
          reply = (await this.#exec(SCRIPTS.acquire, [
            String(this.max),
            String(this.leaseMs),
            ...holderIds,
          ])) as number[];
        } catch (err) {
          // A timed-out call may still run later: give back whatever it might take.
          this.#exec(SCRIPTS.release, [this.#channel, this.#instanceId, ...holderIds]).catch(() => {});
          this.#failWaiters(toStoreError(err));
          return;
        }
        const admitted = Number(reply[0]);
        this.#held = Number(reply[1]);
        // The head now, which may differ from the head when the round started: still FIFO.
        let granted = 0;
        while (granted < admitted) {
          const waiter = this.#shift();
          if (waiter === undefined) break;
          this.#grant(waiter, holderIds[granted++]!);
        }
        if (granted < admitted) {
          const unused = holderIds.slice(granted, admitted);
          if (this.#closed)
            for (const id of unused) this.#holders.set(id, new RedisPermit(undefined, id, 0, 0));
          else this.#exec(SCRIPTS.release, [this.#channel, this.#instanceId, ...unused]).catch(() => {});
        }
        if (admitted === count) {
          this.#pollDelayMs = FIRST_POLL_MS;
          continue;
        }
        // Every permit is held: whoever waits now is queued, up to maxQueue.
        this.#settleArrivals();
        if (!this.#wake) {
          this.#schedulePoll(Number(reply[2]));
          return;
        }
      }
    } catch (err) {
      // A bug, not an outage: nobody may wait for ever on it.
      this.#failWaiters(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #shift(): Waiter | undefined {
    const waiter = this.#queued.shift() ?? this.#arriving.shift();
    if (waiter !== undefined) waiter.list = undefined;
    return waiter;
  }

  #grant(waiter: Waiter, holderId: string): void {
    waiter.detach();
    const now = performance.now();
    const permit = new RedisPermit(this, holderId, now - waiter.enqueuedAtMs, now);
    this.#holders.set(holderId, permit);
    if (this.#renewTimer === undefined) {
      this.#renewTimer = setInterval(renewTick, Math.floor(this.leaseMs / 3), this);
      this.#renewTimer.unref();
    }
    waiter.resolve(permit);
  }

  /** Moves refused newcomers to the queue; those past `maxQueue` get `queue_full`. */
  #settleArrivals(): void {
    for (let waiter = this.#arriving.shift(); waiter !== undefined; waiter = this.#arriving.shift()) {
      if (this.#queued.length >= this.maxQueue) {
        waiter.list = undefined;
        waiter.detach();
        waiter.reject(this.#rejection('queue_full'));
      } else {
        waiter.list = this.#queued;
        this.#queued.push(waiter);
      }
    }
  }

  /** Answers every waiter: with `reason`, or a bypass permit when failing open on an outage. */
  #failWaiters(reason: Error): void {
    const bypass = this.#failOpen && !this.#closed && isStoreUnavailableError(reason);
    for (let waiter = this.#shift(); waiter !== undefined; waiter = this.#shift()) {
      waiter.detach();
      if (bypass) {
        this.#bypassed++;
        const now = performance.now();
        waiter.resolve(new RedisPermit(undefined, undefined, now - waiter.enqueuedAtMs, now));
      } else {
        waiter.reject(reason);
      }
    }
    this.#clearPoll();
  }

  #schedulePoll(nextExpiryMs: number): void {
    if (this.#pollTimer !== undefined || this.#queued.length + this.#arriving.length === 0) return;
    let delayMs = this.#pollDelayMs;
    // A lease running out frees a permit without any announcement: look right after it.
    if (nextExpiryMs >= 0) delayMs = Math.min(delayMs, nextExpiryMs + 1);
    this.#pollDelayMs = Math.min(this.#pollDelayMs * 2, this.pollMs);
    this.#pollTimer = setTimeout(pollTick, Math.max(1, Math.min(delayMs, this.pollMs)), this);
    this.#pollTimer.unref();
  }

  #clearPoll(): void {
    if (this.#pollTimer === undefined) return;
    clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  #stopRenewing(): void {
    if (this.#renewTimer === undefined) return;
    clearInterval(this.#renewTimer);
    this.#renewTimer = undefined;
  }

  #rejection(code: GateRejectionCode): GateRejection {
    switch (code) {
      case 'aborted':
        return new GateRejection(code, 0, 'the request was aborted while waiting for a permit');
      case 'closed':
        return new GateRejection(code, MIN_RETRY_AFTER_MS, 'the distributed gate is closed');
      case 'queue_full':
        return new GateRejection(
          code,
          this.#estimateRetryAfterMs(),
          `all ${this.max} permits are held and the queue of ${this.maxQueue} is full`,
        );
      case 'queue_timeout':
        return new GateRejection(
          code,
          this.#estimateRetryAfterMs(),
          `no permit became free within ${this.queueTimeoutMs} ms in the queue`,
        );
    }
  }

  /** Average hold time on this instance × queue rounds ahead of a newcomer, clamped to 1–60 s. */
  #estimateRetryAfterMs(): number {
    const holdMs = this.#averageHoldMs ?? MIN_RETRY_AFTER_MS;
    const rounds = Math.floor(this.#queued.length / this.max) + 1;
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.ceil(holdMs * rounds)));
  }

  /** Runs `target` on the holder set once Redis is connected, within `commandTimeoutMs`. */
  #exec(target: RedisScript, args: string[]): Promise<unknown> {
    return this.#bounded(this.#evaluate(target, args));
  }

  async #evaluate(target: RedisScript, args: string[]): Promise<unknown> {
    const waiting = this.#connection.whenReady();
    if (waiting !== undefined) await waiting;
    return evalScript(this.#client, target, this.#key, args);
  }

  /** `work`, or a {@link StoreUnavailableError} when it fails to reach Redis or takes too long. */
  async #bounded<T>(work: Promise<T>): Promise<T> {
    try {
      return await withinTimeout(work, this.#timeoutMs);
    } catch (err) {
      throw toStoreError(err);
    }
  }
}
