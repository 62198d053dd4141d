// The retry policy: decides, after a failed attempt, whether to try again and how long to wait
// (exponential backoff with full jitter, `Retry-After` honoured and capped, a total deadline and
// a retry budget). Resolved once and immutable; the relay asks it once per failed attempt.
import { OptionReader } from '../options.js';
import { RetryBudget, type RetryBudgetOptions } from './budget.js';
import { parseRetryAfterMs } from './retry-after.js';

/** Options of {@link retry}. */
export interface RetryOptions {
  /**
   * Total tries, the first one included: `attempts = 3` means 3 tries in all (the first and at
   * most 2 retries); 1 means no retry. Default 3.
   */
  attempts?: number;
  /** Backoff cap of the first retry in ms; doubled for each later one. Default 250. */
  baseDelayMs?: number;
  /** Largest backoff cap in ms, whatever the attempt. Default 8_000. */
  maxDelayMs?: number;
  /** Upstream statuses worth a retry. Default `[408, 429, 500, 502, 503, 504, 529]` (529: Anthropic's overload). */
  retryOn?: readonly number[];
  /** Retry network errors (refused, reset, timed-out connections). Default true. */
  retryNetworkErrors?: boolean;
  /**
   * Longest `Retry-After` / `retry-after-ms` hint honoured, in ms. A longer hint gives up at once
   * (reason `'retry_after_too_long'`) instead of sleeping. Default 10_000.
   */
  maxRetryAfterMs?: number;
  /** Budget for all attempts and waits of one request, in ms from its start. Default 120_000. */
  deadlineMs?: number;
  /** The retry budget shared by every request of this policy; see {@link RetryBudgetOptions}. */
  budget?: Omit<RetryBudgetOptions, 'clock'>;
  /** The clock, ms since the epoch, for the budget and HTTP-date hints. Default `Date.now`. */
  clock?: () => number;
  /** Uniform random numbers in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
}

/** What the relay knows about the attempt that just failed. */
export interface RetryFailure {
  /** 1-based number of the attempt that just failed (1 for the first try). */
  attempt: number;
  /** The upstream status, when a response arrived. */
  status?: number;
  /** True when no response arrived (connect error, reset, timeout). */
  network: boolean;
  /** The upstream response headers, read for `Retry-After` and `retry-after-ms`. */
  headers?: Record<string, string | string[] | undefined>;
  /** The upstream's wait hint in ms, already read from its headers; wins over `headers`. */
  retryAfterMs?: number;
  /** Time since the client request started, in ms. */
  elapsedMs: number;
  /** Overrides the policy's random source for this decision. */
  random?: () => number;
}

/** Why a failed attempt is final. */
export type RetryGiveUpReason =
  /** The configured number of attempts is used up. */
  | 'attempts'
  /** The failure is not retryable: a status outside `retryOn`, or a network error with `retryNetworkErrors: false`. */
  | 'status'
  /** The upstream asked for a wait longer than `maxRetryAfterMs`. */
  | 'retry_after_too_long'
  /** The wait would end at or past `deadlineMs`. */
  | 'deadline'
  /** The retry budget is spent. */
  | 'budget';

/** The answer of {@link RetryPolicy.decide}. */
export type RetryDecision =
  | { readonly retry: true; readonly delayMs: number }
  | { readonly retry: false; readonly reason: RetryGiveUpReason };

const DEFAULT_RETRY_ON: readonly number[] = Object.freeze([408, 429, 500, 502, 503, 504, 529]);

// Frozen and shared: a decision to give up allocates nothing.
const GIVE_UP: { readonly [R in RetryGiveUpReason]: RetryDecision } = Object.freeze({
  attempts: Object.freeze({ retry: false, reason: 'attempts' }),
  status: Object.freeze({ retry: false, reason: 'status' }),
  retry_after_too_long: Object.freeze({ retry: false, reason: 'retry_after_too_long' }),
  deadline: Object.freeze({ retry: false, reason: 'deadline' }),
  budget: Object.freeze({ retry: false, reason: 'budget' }),
});

/**
 * A resolved, immutable retry policy. Build it with {@link retry}. It owns one
 * {@link RetryBudget}, shared by every request that uses the policy.
 */
export class RetryPolicy {
  /** Total tries, the first one included. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Retryable statuses, sorted. */
  readonly retryOn: readonly number[];
  readonly retryNetworkErrors: boolean;
  readonly maxRetryAfterMs: number;
  readonly deadlineMs: number;
  /** The retry budget of this policy. */
  readonly budget: RetryBudget;
  private readonly retryableStatuses: ReadonlySet<number>;
  private readonly clock: () => number;
  private readonly random: () => number;

  constructor(options: RetryOptions = {}) {
    const owner = 'retry';
    const read = new OptionReader(owner);
    read.options(options);
    this.attempts = read.positiveInteger('attempts', options.attempts, 3);
    this.baseDelayMs = read.nonNegativeNumber('baseDelayMs', options.baseDelayMs, 250);
    this.maxDelayMs = read.nonNegativeNumber('maxDelayMs', options.maxDelayMs, 8_000);
    if (this.maxDelayMs < this.baseDelayMs) {
      read.fail('maxDelayMs', `>= baseDelayMs (${this.baseDelayMs})`, this.maxDelayMs);
    }
    this.maxRetryAfterMs = read.nonNegativeNumber('maxRetryAfterMs', options.maxRetryAfterMs, 10_000);
    this.deadlineMs = read.positiveNumber('deadlineMs', options.deadlineMs, 120_000);
    const retryOn = options.retryOn ?? DEFAULT_RETRY_ON;
    if (!Array.isArray(retryOn) || !retryOn.every(isHttpStatus)) {
      read.fail('retryOn', 'an array of HTTP statuses (100-599)', retryOn);
    }
    this.retryOn = Object.freeze([...new Set(retryOn)].sort((a, b) => a - b));
    this.retryableStatuses = new Set(this.retryOn);
    this.retryNetworkErrors = read.boolean('retryNetworkErrors', options.retryNetworkErrors, true);
    this.clock = read.function('clock', options.clock, Date.now);
    this.random = read.function('random', options.random, Math.random);
    this.budget = new RetryBudget(
      { ...read.object('budget', options.budget), clock: this.clock },
      `${owner}: budget`,
    );
    Object.freeze(this);
  }

  /** Counts one client request in the retry budget; call it once per request, not per attempt. */
  recordRequest(): void {
    this.budget.recordRequest();
  }

  /**
   * Whether a request may move on to a fallback (another model group) `elapsedMs` after it
   * started: before the deadline, and within the budget, which counts it as a retry.
   */
  mayFallBack(elapsedMs: number): boolean {
    return elapsedMs < this.deadlineMs && this.budget.tryRetry();
  }

  /**
   * Decides what follows the failed attempt `failure.attempt`. Checks, in order: the failure is
   * retryable (`'status'`), attempts are left (`'attempts'`), the upstream's wait hint is within
   * `maxRetryAfterMs` (`'retry_after_too_long'`), the wait ends before the deadline
   * (`'deadline'`), and last the budget (`'budget'`), which counts the retry only when it is
   * granted.
   *
   * The wait is full jitter, `random() * min(maxDelayMs, baseDelayMs * 2^(attempt-1))`, raised
   * to the upstream's `Retry-After` / `retry-after-ms` hint when there is one: the hint is the
   * minimum wait.
   */
  decide(failure: RetryFailure): RetryDecision {
    const retryable = failure.network
      ? this.retryNetworkErrors
      : failure.status !== undefined && this.retryableStatuses.has(failure.status);
    if (!retryable) return GIVE_UP.status;
    if (failure.attempt >= this.attempts) return GIVE_UP.attempts;
    const hintMs =
      failure.retryAfterMs ??
      (failure.headers === undefined ? undefined : parseRetryAfterMs(failure.headers, this.clock()));
    if (hintMs !== undefined && hintMs > this.maxRetryAfterMs) return GIVE_UP.retry_after_too_long;
    // The exponent is capped so a zero base never meets an infinite factor (0 * Infinity is NaN).
    const capMs = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(failure.attempt - 1, 52));
    const jitterMs = Math.floor((failure.random ?? this.random)() * capMs);
    const delayMs = hintMs === undefined ? jitterMs : Math.max(hintMs, jitterMs);
    if (failure.elapsedMs + delayMs >= this.deadlineMs) return GIVE_UP.deadline;
    if (!this.budget.tryRetry()) return GIVE_UP.budget;
    return { retry: true, delayMs };
  }
}

/**
 * Builds a resolved, immutable {@link RetryPolicy} for `streamRelay({ retry })`. Options are
 * validated here, once; a bad one throws a TypeError naming it.
 *
 * Defaults: `attempts` 3 (3 tries in all: the first and at most 2 retries), `baseDelayMs` 250,
 * `maxDelayMs` 8_000, `retryOn` [408, 429, 500, 502, 503, 504, 529], network errors retried,
 * `maxRetryAfterMs` 10_000, `deadlineMs` 120_000, `budget` { ratio 0.2,
 * minRetriesPerWindow 10, windowMs 10_000 }.
 *
 * @example
 * const policy = retry({ attempts: 3, maxRetryAfterMs: 10_000 });
 * app.post('/v1/chat/completions', streamRelay({ upstream, retry: policy }));
 *
 * // What the relay does with it:
 * policy.recordRequest();
 * for (let attempt = 1; ; attempt++) {
 *   const result = await tryUpstream();
 *   if (result.ok) break;
 *   const decision = policy.decide({ attempt, status: result.status, network: result.network,
 *     headers: result.headers, elapsedMs: performance.now() - startedAt });
 *   if (!decision.retry) break; // answer with this attempt's error
 *   await sleep(decision.delayMs, clientGone.signal);
 * }
 */
export function retry(options: RetryOptions = {}): RetryPolicy {
  return new RetryPolicy(options);
}

function isHttpStatus(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 100 && (value as number) <= 599;
}
