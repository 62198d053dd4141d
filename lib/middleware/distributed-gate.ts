// The distributed gate: at most `max` requests past this point at once across every instance that
// shares one Redis; each permit is released exactly once, when the response closes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext, onResponseClose, type RequestContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';
import { isStoreUnavailableError } from '../errors/store.js';
import { gateRefusalError, isGateRejection } from '../gate/semaphore.js';
import {
  RedisSemaphore,
  type RedisPermit,
  type RedisSemaphoreOptions,
  type RedisSemaphoreStats,
} from '../gate/redis-semaphore.js';

type Next = (err?: unknown) => void;

/**
 * Options of {@link distributedGate}: those of {@link RedisSemaphoreOptions}. Give `redis` (the
 * host's ioredis client) or `url`; `max` is required and must be the same on every instance.
 * Defaults: `name` `'default'`, `maxQueue` `2 * max`, `queueTimeoutMs` 30_000, `leaseMs` 30_000,
 * `pollMs` 250, `prefix` `'llmux:'`, `commandTimeoutMs` 500, `onStoreError` `'fail-closed'`.
 */
export type DistributedGateOptions = RedisSemaphoreOptions;

/**
 * Counters of a {@link DistributedGate}: `inFlight` and `queued` on this instance, `held` across
 * all instances (as of the last call to Redis), `bypassed` and `lapsed` in total.
 */
export type DistributedGateStats = RedisSemaphoreStats;

/** The middleware returned by {@link distributedGate}. */
export interface DistributedGate {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /** This instance's counters (see {@link DistributedGateStats}); a fresh object. */
  stats(): DistributedGateStats;
  /**
   * Answers every waiting request with 503 `gate_closed` and refuses new ones the same way; gives
   * this instance's permits back in Redis (requests already through keep running, no longer
   * counted), and closes the gate's connections (never the host's client). Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Lets at most `max` requests through at once across every instance sharing one Redis, and
 * queues the rest on each instance, up to `maxQueue`, for at most `queueTimeoutMs`.
 *
 * - Permits are leases in a Redis sorted set, taken and given back by atomic Lua scripts and
 *   renewed while the request runs (one timer per gate), so a stream of any length keeps its
 *   permit and a crashed instance's permits come back after `leaseMs`. Lease times are Redis's
 *   own clock: the instances' clocks do not matter.
 * - A released permit wakes every instance at once (pub/sub), with polling (backing off up to
 *   `pollMs`) as the fallback. Within an instance requests are served in FIFO order; **across
 *   instances the order is best effort**: a newer request on one instance may win a freed permit
 *   over an older one waiting on another.
 * - Each permit is released exactly once, when the response closes (after success, a throw in a
 *   later handler, an upstream error and a client that left alike). A waiting client that
 *   disconnects leaves the queue at once.
 *
 * Refusals are 503 in the OpenAI error shape with a `Retry-After`: `queue_full` and
 * `queue_timeout` (type `overloaded_error`, the wait estimated from recent hold times),
 * `gate_closed` after `close()`, and `store_unavailable` (type `server_error`, 1 s) while Redis
 * cannot be reached with `onStoreError: 'fail-closed'`. With `'fail-open'` such requests pass
 * unlimited instead, counted in `stats().bypassed`. The wait is written to the request context
 * as `gateWaitMs`.
 *
 * @example
 * const gate = distributedGate({ url: process.env.REDIS_URL, name: 'chat', max: 32 });
 * app.post('/v1/chat/completions', bodyLimit(), gate, streamRelay({ upstream }));
 * gate.stats(); // { inFlight, queued, held, bypassed, lapsed }
 * process.on('SIGTERM', () => void gate.close());
 */
export function distributedGate(options: DistributedGateOptions): DistributedGate {
  const semaphore = new RedisSemaphore(options, 'distributedGate');
  let closed = false;

  const gate = function llmuxDistributedGate(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = ensureContext(req, res);
    // The client left before reaching the gate: nobody to serve, so no permit to spend.
    if (res.closed) return;
    if (closed) {
      refuse(res, ctx, errors.gateClosed());
      return;
    }
    const pass = new GatePass(res, ctx, next);
    onResponseClose(res, () => pass.responseClosed());
    semaphore.acquire(pass.clientLeft.signal).then(
      (permit) => pass.granted(permit),
      (reason: unknown) => pass.refused(reason),
    );
  } as DistributedGate;

  gate.stats = (): DistributedGateStats => semaphore.stats();

  gate.close = (): Promise<void> => {
    closed = true;
    return semaphore.close();
  };

  return gate;
}

/** One request's way through the gate: waiting, then holding a permit until the response closes. */
class GatePass {
  readonly clientLeft = new AbortController();
  #permit: RedisPermit | undefined = undefined;
  #closed = false;

  constructor(
    readonly res: ServerResponse,
    readonly ctx: RequestContext,
    readonly next: Next,
  ) {}

  /** The response closed (finished, or the client left): give the permit back, or stop waiting. */
  responseClosed(): void {
    this.#closed = true;
    if (this.#permit !== undefined) this.#permit.release();
    else this.clientLeft.abort();
  }

  granted(permit: RedisPermit): void {
    // Granted in the same turn the client left: give it straight back.
    if (this.#closed) {
      permit.release();
      return;
    }
    this.#permit = permit;
    this.ctx.gateWaitMs = permit.waitedMs;
    this.next();
  }

  refused(reason: unknown): void {
    if (isStoreUnavailableError(reason)) {
      refuse(this.res, this.ctx, errors.storeUnavailable('concurrency gate store', reason));
      return;
    }
    if (!isGateRejection(reason)) {
      refuse(this.res, this.ctx, errors.internal(reason));
      return;
    }
    if (reason.code === 'aborted') return; // the client is gone; nothing to answer
    refuse(this.res, this.ctx, gateRefusalError(reason));
  }
}

function refuse(res: ServerResponse, ctx: RequestContext, err: LlmuxError): void {
  ctx.errorCode = err.code;
  sendError(res, err);
}
