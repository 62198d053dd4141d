// A FIFO counting semaphore with direct hand-off: a released permit goes straight to the oldest
// waiter, so no newcomer can overtake the queue; a waiter leaves in O(1) on abort or timeout.
import { OptionReader } from '../options.js';
import { errors, LlmuxError, llmuxError } from '../errors/llmux-error.js';
import { DROP_WAITER, QueuedWaiter } from './waiter.js';
import { WaiterList } from './waiter-list.js';

/**
 * Why {@link FifoSemaphore.acquire} refused. Stable; match on these, not on messages.
 * - `queue_full`: every permit was out and `maxQueue` requests were already waiting.
 * - `queue_timeout`: the request waited `queueTimeoutMs` without getting a permit.
 * - `aborted`: the caller's signal aborted before a permit was handed over.
 * - `closed`: the semaphore was closed (before or while the request waited).
 */
export type GateRejectionCode = 'queue_full' | 'queue_timeout' | 'aborted' | 'closed';

/** The error {@link FifoSemaphore.acquire} rejects with. */
export class GateRejection extends Error {
  override readonly name = 'GateRejection';
  /** Why the request was refused. */
  readonly code: GateRejectionCode;
  /**
   * A rough estimate of when a retry may find room, in ms: the average permit hold time times
   * the number of queue "rounds" ahead, clamped to 1–60 s. `0` for `aborted`.
   */
  readonly retryAfterMs: number;

  constructor(code: GateRejectionCode, retryAfterMs: number, message: string) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** True when `value` is a {@link GateRejection} (also across duplicated package copies). */
export function isGateRejection(value: unknown): value is GateRejection {
  return value instanceof GateRejection || (value instanceof Error && value.name === 'GateRejection');
}

/** The client's answer to a gate refusal: 503 in the OpenAI shape, with `Retry-After`. */
export function gateRefusalError(reason: GateRejection): LlmuxError {
  if (reason.code === 'closed') return errors.gateClosed();
  return llmuxError(reason.code === 'queue_full' ? 'queue_full' : 'queue_timeout', {
    message: reason.message,
    retryAfterSeconds: Math.max(1, Math.ceil(reason.retryAfterMs / 1000)),
  });
}

/** Options of {@link FifoSemaphore}. */
export interface FifoSemaphoreOptions {
  /** Permits that may be out at once. Positive integer; required. */
  max: number;
  /**
   * Requests that may wait for a permit; past it, `acquire` rejects with `queue_full`.
   * Non-negative integer; `0` means no queue (refuse at once when every permit is out).
   * @defaultValue `2 * max`
   */
  maxQueue?: number;
  /**
   * Longest wait in the queue, in ms; past it, `acquire` rejects with `queue_timeout`. Positive
   * integer up to 2_147_483_647, or `Infinity` for no limit (then no timer is started).
   * @defaultValue 30_000
   */
  queueTimeoutMs?: number;
  /**
   * The clock for wait and hold times, in ms. Only differences are used, so it need not be the
   * epoch. Timeouts themselves run on `setTimeout`.
   * @defaultValue `performance.now`
   */
  clock?: () => number;
  /**
   * Called synchronously each time the semaphore becomes idle: no permit out and nobody
   * waiting. The concurrency gate uses it to drop per-key semaphores. Must not throw.
   */
  onIdle?: () => void;
}

/** {@link FifoSemaphoreOptions} with every default filled in and checked. */
export interface FifoSemaphoreSettings {
  max: number;
  maxQueue: number;
  queueTimeoutMs: number;
  clock: () => number;
}

/** The default longest wait in the queue: 30 s. */
export const DEFAULT_QUEUE_TIMEOUT_MS = 30_000;

/** Retry hint when nothing was measured yet, and its floor: `Retry-After` counts whole seconds. */
const MIN_RETRY_AFTER_MS = 1_000;
/** Ceiling of the retry hint, so a slow upstream never tells clients to go away for long. */
const MAX_RETRY_AFTER_MS = 60_000;
/** Weight of the newest hold time in the running average. */
const HOLD_AVERAGE_WEIGHT = 0.2;

const defaultClock = (): number => performance.now();

/**
 * Fills defaults and validates; throws a `TypeError` naming the option and its value, prefixed
 * with `owner` (the factory the options were given to).
 */
export function resolveSemaphoreOptions(
  options: FifoSemaphoreOptions,
  owner = 'FifoSemaphore',
): FifoSemaphoreSettings {
  const read = new OptionReader(owner);
  read.options(options, true);
  const max = read.positiveInteger('max', options.max);
  const maxQueue = read.nonNegativeInteger('maxQueue', options.maxQueue, 2 * max);
  const queueTimeoutMs =
    options.queueTimeoutMs === Infinity
      ? Infinity
      : read.durationMs('queueTimeoutMs', options.queueTimeoutMs, DEFAULT_QUEUE_TIMEOUT_MS);
  const clock = read.function('clock', options.clock, defaultClock);
  read.function('onIdle', options.onIdle);
  return { max, maxQueue, queueTimeoutMs, clock };
}

// Friend access between the semaphore, its permits and its waiters, kept off the public API.
const RETURN_PERMIT = Symbol('returnPermit');

/**
 * The right to one slot of a {@link FifoSemaphore}. Release it exactly when the work ends;
 * releasing again is a no-op, so every exit path may call `release()` without double-freeing.
 */
export class Permit {
  #owner: FifoSemaphore | undefined;
  /** ms spent waiting in the queue before the permit was granted; `0` when granted at once. */
  readonly waitedMs: number;
  /** The semaphore's clock reading when the permit was granted. */
  readonly grantedAtMs: number;

  /** @internal Permits are made by {@link FifoSemaphore}; do not construct them. */
  constructor(owner: FifoSemaphore, waitedMs: number, grantedAtMs: number) {
    this.#owner = owner;
    this.waitedMs = waitedMs;
    this.grantedAtMs = grantedAtMs;
  }

  /** True once {@link Permit.release} was called. */
  get released(): boolean {
    return this.#owner === undefined;
  }

  /** Gives the slot back (to the oldest waiter, if any). Idempotent. */
  release(): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    owner[RETURN_PERMIT](this);
  }
}

/** One queued `acquire`. */
class Waiter extends QueuedWaiter<Waiter, Permit, GateRejection> {}

/**
 * A FIFO counting semaphore with a bounded queue and a queue timeout.
 *
 * - **Direct hand-off.** `release()` with waiters queued passes the permit to the oldest waiter
 *   there and then: `inFlight` does not change, so a `tryAcquire`/`acquire` in the same tick finds
 *   no free slot and cannot overtake the queue.
 * - **Hand-off wins over a late abort.** From the moment a waiter is handed a permit it owns it:
 *   its timer and abort listener are gone, and `acquire` resolves with the permit even if the
 *   signal aborts in the same tick. The caller must release a permit it no longer needs (which
 *   passes it to the next waiter); it is never lost and never counted twice.
 * - **O(1) leave.** Waiters form a doubly linked list; an abort or a timeout unlinks one at once.
 * - Each waiter has at most one timer (unref'd), cleared on grant, abort, timeout or close, and
 *   its abort listener is removed on every one of those exits.
 *
 * @example
 * const semaphore = new FifoSemaphore({ max: 4, maxQueue: 100, queueTimeoutMs: 10_000 });
 * const permit = await semaphore.acquire(signal); // rejects with a GateRejection
 * try {
 *   await work();
 * } finally {
 *   permit.release();
 * }
 */
export class FifoSemaphore {
  /** Permits that may be out at once. */
  readonly max: number;
  /** Requests that may wait. */
  readonly maxQueue: number;
  /** Longest wait in ms (`Infinity`: no limit). */
  readonly queueTimeoutMs: number;
  readonly #clock: () => number;
  readonly #onIdle: (() => void) | undefined;
  readonly #waiters = new WaiterList<Waiter>();
  #inFlight = 0;
  #closed = false;
  #averageHoldMs: number | undefined = undefined;

  /** Throws a `TypeError` naming a bad option (see {@link FifoSemaphoreOptions}). */
  constructor(options: FifoSemaphoreOptions) {
    const settings = resolveSemaphoreOptions(options);
    this.max = settings.max;
    this.maxQueue = settings.maxQueue;
    this.queueTimeoutMs = settings.queueTimeoutMs;
    this.#clock = settings.clock;
    this.#onIdle = options.onIdle;
  }

  /** Permits currently out (granted and not yet released). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests waiting for a permit. */
  get queued(): number {
    return this.#waiters.length;
  }

  /** True when no permit is out and nobody waits. */
  get idle(): boolean {
    return this.#inFlight === 0 && this.#waiters.length === 0;
  }

  /** True once {@link FifoSemaphore.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * A permit if one is free and nobody waits for one, else `undefined` (never queues). Also
   * `undefined` once closed.
   */
  tryAcquire(): Permit | undefined {
    if (this.#closed || this.#inFlight >= this.max || this.#waiters.length > 0) return undefined;
    this.#inFlight++;
    return new Permit(this, 0, this.#clock());
  }

  /**
   * A permit, now if one is free, else after the requests queued before this one. Rejects with a
   * {@link GateRejection}: `queue_full` at once when `maxQueue` requests already wait,
   * `queue_timeout` after `queueTimeoutMs`, `aborted` when `signal` aborts first (or already
   * had), `closed` when the semaphore is or gets closed. See the class notes on hand-off.
   */
  acquire(signal?: AbortSignal): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(this.#rejection('aborted'));
    if (this.#closed) return Promise.reject(this.#rejection('closed'));
    const permit = this.tryAcquire();
    if (permit !== undefined) return Promise.resolve(permit);
    if (this.#waiters.length >= this.maxQueue) return Promise.reject(this.#rejection('queue_full'));
    return new Promise<Permit>((resolve, reject) => {
      const waiter = new Waiter(this, resolve, reject, signal, this.#clock());
      this.#waiters.push(waiter);
      waiter.expireAfter(this.queueTimeoutMs);
      signal?.addEventListener('abort', waiter);
    });
  }

  /**
   * Refuses new requests (`tryAcquire` gives `undefined`, `acquire` rejects with `closed`) and
   * rejects every waiter with `closed`. Permits already out stay valid until released.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let waiter = this.#waiters.shift(); waiter !== undefined; waiter = this.#waiters.shift()) {
      waiter.detach();
      waiter.reject(this.#rejection('closed'));
    }
    this.#notifyIfIdle();
  }

  /** @internal Called by {@link Permit.release}, once per permit. */
  [RETURN_PERMIT](permit: Permit): void {
    const now = this.#clock();
    const heldMs = now - permit.grantedAtMs;
    const average = this.#averageHoldMs;
    this.#averageHoldMs = average === undefined ? heldMs : average + HOLD_AVERAGE_WEIGHT * (heldMs - average);
    const next = this.#waiters.shift();
    if (next !== undefined) {
      // Direct hand-off: the slot never becomes free, so nobody can take it on the way.
      next.detach();
      next.resolve(new Permit(this, now - next.enqueuedAtMs, now));
      return;
    }
    this.#inFlight--;
    this.#notifyIfIdle();
  }

  /** @internal Takes a waiter out of the queue on abort or timeout; a no-op if it already left. */
  [DROP_WAITER](waiter: Waiter, code: 'aborted' | 'queue_timeout'): void {
    if (!this.#waiters.remove(waiter)) return;
    waiter.detach();
    waiter.reject(this.#rejection(code));
    this.#notifyIfIdle();
  }

  #notifyIfIdle(): void {
    if (this.#onIdle !== undefined && this.idle) this.#onIdle();
  }

  #rejection(code: GateRejectionCode): GateRejection {
    switch (code) {
      case 'aborted':
        return new GateRejection(code, 0, 'the request was aborted while waiting for a slot');
      case 'closed':
        return new GateRejection(code, MIN_RETRY_AFTER_MS, 'the concurrency gate is closed');
      case 'queue_full':
        return new GateRejection(
          code,
          this.#estimateRetryAfterMs(),
          `all ${this.max} slots are busy and the queue of ${this.maxQueue} is full`,
        );
      case 'queue_timeout':
        return new GateRejection(
          code,
          this.#estimateRetryAfterMs(),
          `no slot became free within ${this.queueTimeoutMs} ms in the queue`,
        );
    }
  }

  /** Average hold time × queue rounds ahead of a newcomer, clamped to 1–60 s. */
  #estimateRetryAfterMs(): number {
    const holdMs = this.#averageHoldMs ?? MIN_RETRY_AFTER_MS;
    const rounds = Math.floor(this.#waiters.length / this.max) + 1;
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.ceil(holdMs * rounds)));
  }
}
