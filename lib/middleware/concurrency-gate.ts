// The concurrency gate: at most `max` requests (per key) past this point at once, the rest waiting
// in FIFO order; each permit is released exactly once, when the response ends or the client leaves.
import { OptionReader } from '../options.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext, type RequestContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';
import {
  FifoSemaphore,
  gateRefusalError,
  isGateRejection,
  resolveSemaphoreOptions,
  type FifoSemaphoreSettings,
  type Permit,
} from '../gate/semaphore.js';

type Next = (err?: unknown) => void;

/** Options of {@link concurrencyGate}. With `key`, every limit applies to each key on its own. */
export interface ConcurrencyGateOptions {
  /** Requests let through at once (per key). Positive integer; required. */
  max: number;
  /**
   * Requests that may wait for a slot (per key); past it: 503 `queue_full`. Non-negative integer;
   * `0` refuses at once whenever all slots are busy. The default absorbs a burst of twice the
   * concurrency without letting waits grow unbounded.
   * @defaultValue `2 * max`
   */
  maxQueue?: number;
  /**
   * Longest wait for a slot, in ms; past it: 503 `queue_timeout`. Positive integer, or `Infinity`
   * for no limit.
   * @defaultValue 30_000
   */
  queueTimeoutMs?: number;
  /**
   * Gives requests a gate per key (API key, team, model…); `res` gives access to the request
   * context, e.g. `(req, res) => getContext(res)?.keyId ?? 'anonymous'` after `keyAuth`. A key's
   * gate is made on demand and dropped as soon as nothing runs or waits on it, so the map holds
   * only keys with work in flight. A throw is passed to `next`. Default: one gate for all requests.
   */
  key?(req: IncomingMessage, res: ServerResponse): string;
  /**
   * Most keys with work in flight at once; a request for a new key past it gets 503
   * `overloaded`. Positive integer; only used with `key`.
   * @defaultValue 10_000
   */
  maxKeys?: number;
  /**
   * The clock for wait times, in ms (only differences are used).
   * @defaultValue `performance.now`
   */
  clock?: () => number;
}

/** Counters of a {@link ConcurrencyGate}. */
export interface ConcurrencyGateStats {
  /** Requests holding a slot. */
  inFlight: number;
  /** Requests waiting for one. */
  queued: number;
  /** Per-key gates alive (keys with work in flight or waiting); `0` without the `key` option. */
  keys: number;
}

/** The middleware returned by {@link concurrencyGate}. */
export interface ConcurrencyGate {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /**
   * Totals across all keys; or, given `key`, the counters of that key's gate (all `0` when it has
   * none). Without the `key` option the argument is ignored.
   */
  stats(key?: string): ConcurrencyGateStats;
  /**
   * Answers every waiting request with 503 `gate_closed` and refuses new ones the same way.
   * Requests already through keep their slot until they end. Idempotent; resolves at once.
   */
  close(): Promise<void>;
}

/** The default bound on keys with work in flight. */
export const DEFAULT_MAX_GATE_KEYS = 10_000;

interface ConcurrencyGateSettings {
  /** What each gate (the shared one, or one per key) is made with. */
  semaphore: FifoSemaphoreSettings;
  key: ((req: IncomingMessage, res: ServerResponse) => string) | undefined;
  maxKeys: number;
}

/** Fills defaults and validates; throws a TypeError naming a bad option. */
function resolveGateOptions(options: ConcurrencyGateOptions): ConcurrencyGateSettings {
  const semaphore = resolveSemaphoreOptions(options, 'concurrencyGate');
  const read = new OptionReader('concurrencyGate');
  return {
    semaphore,
    key: read.function('key', options.key),
    maxKeys: read.positiveInteger('maxKeys', options.maxKeys, DEFAULT_MAX_GATE_KEYS),
  };
}

const NO_STATS: ConcurrencyGateStats = Object.freeze({ inFlight: 0, queued: 0, keys: 0 });

/**
 * Lets at most `max` requests through at once and queues the rest in FIFO order, up to
 * `maxQueue`, for at most `queueTimeoutMs`. A finished request's slot goes directly to the oldest
 * waiter, so newcomers never overtake the queue. Each slot is released exactly once, on the
 * response's `close` (which follows a finished response and a client that left alike), so it
 * comes back after success, a throw in a later handler, an upstream error or timeout, and a
 * client abort mid-stream. A waiting client that disconnects leaves the queue at once.
 *
 * Refusals are 503 in the OpenAI error shape with type `overloaded_error` and a `Retry-After`:
 * `queue_full` and `queue_timeout` (the wait estimated from recent hold times), `gate_closed`
 * after `close()` and `overloaded` when `maxKeys` keys are already busy (both 1 s). The wait is written to the
 * request context as `gateWaitMs` (`0` when a slot was free).
 *
 * @example
 * const gate = concurrencyGate({ max: 8, maxQueue: 32, queueTimeoutMs: 10_000 });
 * app.post('/v1/chat/completions', bodyLimit(), gate, streamRelay({ upstream }));
 * // per API key, after keyAuth:
 * const perKey = concurrencyGate({ max: 2, key: (req, res) => getContext(res)?.keyId ?? 'anonymous' });
 * gate.stats(); // { inFlight, queued, keys }
 */
export function concurrencyGate(options: ConcurrencyGateOptions): ConcurrencyGate {
  const settings = resolveGateOptions(options);
  const keyOf = settings.key;
  // The one gate of all requests; unused with the `key` option.
  const shared = new FifoSemaphore(settings.semaphore);
  const perKey = new Map<string, FifoSemaphore>();
  let closed = false;

  function semaphoreFor(key: string): FifoSemaphore | undefined {
    const found = perKey.get(key);
    if (found !== undefined) return found;
    if (perKey.size >= settings.maxKeys) return undefined;
    const semaphore: FifoSemaphore = new FifoSemaphore({
      ...settings.semaphore,
      onIdle: () => {
        if (perKey.get(key) === semaphore) perKey.delete(key);
      },
    });
    perKey.set(key, semaphore);
    return semaphore;
  }

  const gate = function llmuxConcurrencyGate(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = ensureContext(req, res);
    // The client left before reaching the gate: nobody to serve, so no slot to spend.
    if (res.closed) return;
    if (closed) {
      refuse(res, ctx, errors.gateClosed());
      return;
    }
    let semaphore = shared;
    if (keyOf !== undefined) {
      let key: string;
      try {
        key = keyOf(req, res);
      } catch (err) {
        next(err);
        return;
      }
      const forKey = semaphoreFor(key);
      if (forKey === undefined) {
        refuse(res, ctx, errors.overloaded('too many concurrency gate keys are busy; retry later'));
        return;
      }
      semaphore = forKey;
    }
    const permit = semaphore.tryAcquire();
    if (permit === undefined) waitForSlot(res, ctx, semaphore, next);
    else admit(res, ctx, permit, next);
  } as ConcurrencyGate;

  gate.stats = (key?: string): ConcurrencyGateStats => {
    if (keyOf === undefined) return { inFlight: shared.inFlight, queued: shared.queued, keys: 0 };
    if (key !== undefined) {
      const semaphore = perKey.get(key);
      return semaphore === undefined
        ? { ...NO_STATS }
        : { inFlight: semaphore.inFlight, queued: semaphore.queued, keys: 1 };
    }
    let inFlight = 0;
    let queued = 0;
    for (const semaphore of perKey.values()) {
      inFlight += semaphore.inFlight;
      queued += semaphore.queued;
    }
    return { inFlight, queued, keys: perKey.size };
  };

  gate.close = (): Promise<void> => {
    if (!closed) {
      closed = true;
      shared.close();
      // A semaphore that turns idle here deletes itself; deleting during Map iteration is safe.
      for (const semaphore of perKey.values()) semaphore.close();
    }
    return Promise.resolve();
  };

  return gate;
}

/** Lets the request through holding `permit`, released once when the response closes. */
function admit(res: ServerResponse, ctx: RequestContext, permit: Permit, next: Next): void {
  ctx.gateWaitMs = permit.waitedMs;
  res.once('close', () => permit.release());
  next();
}

/** Queues the request; a client that disconnects while queued leaves the queue at once. */
function waitForSlot(res: ServerResponse, ctx: RequestContext, semaphore: FifoSemaphore, next: Next): void {
  const clientLeft = new AbortController();
  const leave = () => clientLeft.abort();
  res.once('close', leave);
  semaphore.acquire(clientLeft.signal).then(
    (permit) => {
      res.off('close', leave);
      // Handed a slot in the same turn the client left: pass it straight on to the next waiter.
      if (res.closed) permit.release();
      else admit(res, ctx, permit, next);
    },
    (reason: unknown) => {
      res.off('close', leave);
      if (!isGateRejection(reason)) {
        refuse(res, ctx, errors.internal(reason));
        return;
      }
      if (reason.code === 'aborted') return; // the client is gone; nothing to answer
      refuse(res, ctx, gateRefusalError(reason));
    },
  );
}

function refuse(res: ServerResponse, ctx: RequestContext, err: LlmuxError): void {
  ctx.errorCode = err.code;
  sendError(res, err);
}
