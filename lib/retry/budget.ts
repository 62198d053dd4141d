// A retry budget: retries may add at most a fixed share of extra load over a sliding window, so
// an upstream that is down is not hit by a retry storm. O(1) memory: two windows of two counters.
import { OptionReader } from '../options.js';

/** Options of {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /**
   * Retries allowed per request over the window: 0.2 lets retries add at most 20% extra attempts.
   * Default 0.2.
   */
  ratio?: number;
  /**
   * Retries always allowed per window, whatever the traffic, so a quiet relay can still retry.
   * Default 10.
   */
  minRetriesPerWindow?: number;
  /** Length of the sliding window in ms. Default 10_000. */
  windowMs?: number;
  /** The clock, ms since the epoch; injectable for tests. Default `Date.now`. */
  clock?: () => number;
}

/** The resolved {@link RetryBudgetOptions} (without the clock). */
export interface RetryBudgetSettings {
  readonly ratio: number;
  readonly minRetriesPerWindow: number;
  readonly windowMs: number;
}

/** Fills defaults and validates; throws a TypeError naming a bad option. */
export function resolveRetryBudgetOptions(
  options: RetryBudgetOptions = {},
  owner = 'RetryBudget',
): RetryBudgetSettings {
  const read = new OptionReader(owner);
  read.options(options);
  return Object.freeze({
    ratio: read.nonNegativeNumber('ratio', options.ratio, 0.2),
    minRetriesPerWindow: read.nonNegativeInteger('minRetriesPerWindow', options.minRetriesPerWindow, 10),
    windowMs: read.positiveInteger('windowMs', options.windowMs, 10_000),
  });
}

/**
 * Counts client requests and retries in the current and the previous fixed window, and weighs the
 * previous one by how much of it still overlaps the sliding window (the approximation rate
 * limiters use). A retry is allowed while, counting it,
 * `retries <= max(minRetriesPerWindow, ratio * requests)` over the sliding window.
 *
 * Call {@link RetryBudget.recordRequest} once per client request (not per attempt) and
 * {@link RetryBudget.tryRetry} before each retry; a retry it refuses must not be made.
 *
 * @example
 * const budget = new RetryBudget({ ratio: 0.2, minRetriesPerWindow: 10, windowMs: 10_000 });
 * budget.recordRequest();
 * if (failed && budget.tryRetry()) retryTheRequest();
 */
export class RetryBudget {
  /** The resolved settings. */
  readonly settings: RetryBudgetSettings;
  private readonly clock: () => number;
  private windowIndex: number;
  private currentRequests = 0;
  private currentRetries = 0;
  private previousRequests = 0;
  private previousRetries = 0;

  constructor(options: RetryBudgetOptions = {}, owner = 'RetryBudget') {
    this.settings = resolveRetryBudgetOptions(options, owner);
    const clock = new OptionReader(owner).function('clock', options.clock, Date.now);
    this.clock = clock;
    this.windowIndex = Math.floor(clock() / this.settings.windowMs);
  }

  /** Counts one client request (once per request, however many attempts it takes). */
  recordRequest(): void {
    this.roll(this.clock());
    this.currentRequests++;
  }

  /** True, and counts the retry, when the budget allows one more; false (counting nothing) otherwise. */
  tryRetry(): boolean {
    const now = this.clock();
    this.roll(now);
    const { ratio, minRetriesPerWindow, windowMs } = this.settings;
    // Clamped, so a clock that stepped back never weighs the previous window above 1.
    const previousWeight = 1 - Math.max(0, now - this.windowIndex * windowMs) / windowMs;
    const requests = this.currentRequests + this.previousRequests * previousWeight;
    const retries = this.currentRetries + this.previousRetries * previousWeight;
    if (retries + 1 > Math.max(minRetriesPerWindow, ratio * requests)) return false;
    this.currentRetries++;
    return true;
  }

  /** Moves to the window `now` falls in; a clock that steps back stays in the current window. */
  private roll(now: number): void {
    const index = Math.floor(now / this.settings.windowMs);
    if (index <= this.windowIndex) return;
    if (index === this.windowIndex + 1) {
      this.previousRequests = this.currentRequests;
      this.previousRetries = this.currentRetries;
    } else {
      this.previousRequests = 0;
      this.previousRetries = 0;
    }
    this.currentRequests = 0;
    this.currentRetries = 0;
    this.windowIndex = index;
  }
}
