// The retry policy (attempts, jitter, Retry-After, deadline), its budget and the abortable sleep.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { RetryBudget } from '../lib/retry/budget.js';
import { retry, type RetryDecision, type RetryOptions } from '../lib/retry/policy.js';
import { isAbortError, MAX_SLEEP_MS, sleep } from '../lib/retry/sleep.js';
import { fuzzRuns } from './support/fuzz.js';
import { watchResources } from './support/http.js';

const NOW = Date.parse('2026-11-22T12:00:00Z');

/** Runs a request that always fails with `status`, and counts the tries the policy allows. */
function countTries(options: RetryOptions, status = 503): { tries: number; last: RetryDecision } {
  const policy = retry({ clock: () => NOW, random: () => 0.5, ...options });
  policy.recordRequest();
  for (let attempt = 1; ; attempt++) {
    const decision = policy.decide({ attempt, status, network: false, elapsedMs: 0 });
    if (!decision.retry) return { tries: attempt, last: decision };
  }
}

describe('retry()', () => {
  it('resolves the documented defaults into a frozen policy', () => {
    const policy = retry();
    expect(policy).toMatchObject({
      attempts: 3,
      baseDelayMs: 250,
      maxDelayMs: 8_000,
      retryOn: [408, 429, 500, 502, 503, 504, 529],
      retryNetworkErrors: true,
      maxRetryAfterMs: 10_000,
      deadlineMs: 120_000,
    });
    expect(policy.budget.settings).toEqual({ ratio: 0.2, minRetriesPerWindow: 10, windowMs: 10_000 });
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.retryOn)).toBe(true);
  });

  it.each([
    [{ attempts: 0 }, 'attempts'],
    [{ attempts: 2.5 }, 'attempts'],
    [{ baseDelayMs: -1 }, 'baseDelayMs'],
    [{ maxDelayMs: Number.NaN }, 'maxDelayMs'],
    [{ baseDelayMs: 500, maxDelayMs: 100 }, 'maxDelayMs'],
    [{ maxRetryAfterMs: Number.POSITIVE_INFINITY }, 'maxRetryAfterMs'],
    [{ deadlineMs: 0 }, 'deadlineMs'],
    [{ retryOn: [503, 700] }, 'retryOn'],
    [{ retryNetworkErrors: 'yes' as unknown as boolean }, 'retryNetworkErrors'],
    [{ budget: { ratio: -0.1 } }, 'budget: ratio'],
    [{ budget: { minRetriesPerWindow: 1.5 } }, 'budget: minRetriesPerWindow'],
    [{ budget: { windowMs: 0 } }, 'budget: windowMs'],
    [{ random: 3 as unknown as () => number }, 'random'],
  ])('refuses %j with a TypeError naming %s', (options, name) => {
    expect(() => retry(options as RetryOptions)).toThrow(TypeError);
    expect(() => retry(options as RetryOptions)).toThrow(`retry: ${name} must`);
  });

  it.each([1, 2, 3, 5, 8])('makes exactly %i tries in all for that many attempts', (attempts) => {
    expect(countTries({ attempts })).toEqual({ tries: attempts, last: { retry: false, reason: 'attempts' } });
  });

  it('makes exactly `attempts` tries for any count and any jitter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 11 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (n, r) => {
          expect(countTries({ attempts: n, random: () => r }).tries).toBe(n);
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });

  it('waits random() * min(maxDelayMs, baseDelayMs * 2^(attempt-1)): full jitter', () => {
    const policy = retry({ attempts: 10, baseDelayMs: 100, maxDelayMs: 1_000, random: () => 0.5 });
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) =>
      policy.decide({ attempt, network: true, elapsedMs: 0 }),
    );
    expect(delays).toEqual([50, 100, 200, 400, 500, 500].map((delayMs) => ({ retry: true, delayMs })));
  });

  it('keeps every jittered wait in [0, cap)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const policy = retry({ attempts: 2_001, deadlineMs: 1e9, budget: { minRetriesPerWindow: 1 } });
          const decision = policy.decide({ attempt, network: true, elapsedMs: 0, random: () => r });
          const capMs = Math.min(8_000, 250 * 2 ** (attempt - 1));
          expect(decision.retry).toBe(true);
          const { delayMs } = decision as { delayMs: number };
          expect(delayMs).toBeGreaterThanOrEqual(0);
          expect(delayMs).toBeLessThan(Math.max(capMs, 1));
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });

  it.each([
    [{ 'retry-after': '2' }, 0.1, 2_000],
    [{ 'retry-after-ms': '1500' }, 0.1, 1_500],
    [{ 'retry-after': 'Sun, 22 Nov 2026 12:00:03 GMT' }, 0.1, 3_000],
    [{ 'retry-after-ms': '10' }, 0.9, 225],
  ])('takes the hint %j as the minimum wait (random %d gives %i ms)', (headers, r, delayMs) => {
    const policy = retry({ clock: () => NOW, random: () => r });
    expect(policy.decide({ attempt: 1, status: 429, network: false, headers, elapsedMs: 0 })).toEqual({
      retry: true,
      delayMs,
    });
  });

  it('gives up at once on Retry-After: 60 with a 10 s cap, starting no timer', () => {
    jest.useFakeTimers();
    try {
      const policy = retry({ maxRetryAfterMs: 10_000 });
      const decision = policy.decide({
        attempt: 1,
        status: 429,
        network: false,
        headers: { 'retry-after': '60' },
        elapsedMs: 0,
      });
      expect(decision).toEqual({ retry: false, reason: 'retry_after_too_long' });
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  it('takes a hint already read in ms, and prefers it to the headers', () => {
    const policy = retry({ maxRetryAfterMs: 10_000, random: () => 0 });
    const base = { attempt: 1, status: 429, network: false, elapsedMs: 0 } as const;
    expect(policy.decide({ ...base, retryAfterMs: 60_000 })).toEqual({
      retry: false,
      reason: 'retry_after_too_long',
    });
    expect(policy.decide({ ...base, retryAfterMs: 2_000, headers: { 'retry-after': '60' } })).toEqual({
      retry: true,
      delayMs: 2_000,
    });
  });

  it.each([400, 401, 403, 404, 422, 501])('does not retry status %i by default', (status) => {
    expect(retry().decide({ attempt: 1, status, network: false, elapsedMs: 0 })).toEqual({
      retry: false,
      reason: 'status',
    });
  });

  it('retries only the configured statuses', () => {
    const policy = retry({ retryOn: [409] });
    expect(policy.decide({ attempt: 1, status: 409, network: false, elapsedMs: 0 }).retry).toBe(true);
    expect(policy.decide({ attempt: 1, status: 503, network: false, elapsedMs: 0 })).toEqual({
      retry: false,
      reason: 'status',
    });
  });

  it('retries network errors unless retryNetworkErrors is false', () => {
    expect(retry().decide({ attempt: 1, network: true, elapsedMs: 0 }).retry).toBe(true);
    expect(retry({ retryNetworkErrors: false }).decide({ attempt: 1, network: true, elapsedMs: 0 })).toEqual({
      retry: false,
      reason: 'status',
    });
  });

  it('gives up when the wait would reach the deadline', () => {
    const policy = retry({ deadlineMs: 10_000, random: () => 0.99 });
    expect(policy.decide({ attempt: 1, network: true, elapsedMs: 9_700 }).retry).toBe(true);
    expect(policy.decide({ attempt: 1, network: true, elapsedMs: 9_800 })).toEqual({
      retry: false,
      reason: 'deadline',
    });
    const hinted = { 'retry-after': '5' };
    expect(
      policy.decide({ attempt: 1, status: 503, network: false, headers: hinted, elapsedMs: 6_000 }),
    ).toEqual({ retry: false, reason: 'deadline' });
  });

  it('gives up when the retry budget is spent, and counts only granted retries', () => {
    const policy = retry({ attempts: 5, budget: { ratio: 0, minRetriesPerWindow: 2 }, clock: () => NOW });
    const failure = { attempt: 1, status: 503, network: false, elapsedMs: 0 };
    // Refusals for other reasons spend nothing.
    expect(policy.decide({ ...failure, status: 400 }).retry).toBe(false);
    expect(policy.decide({ ...failure, attempt: 5 }).retry).toBe(false);
    expect(policy.decide(failure).retry).toBe(true);
    expect(policy.decide(failure).retry).toBe(true);
    expect(policy.decide(failure)).toEqual({ retry: false, reason: 'budget' });
  });
});

describe('RetryBudget', () => {
  const windowMs = 10_000;
  const start = 1_000 * windowMs;

  function budgetAt(options: { ratio?: number; minRetriesPerWindow?: number } = {}) {
    const clock = { now: start };
    const budget = new RetryBudget({ windowMs, ...options, clock: () => clock.now });
    return { budget, clock };
  }

  function grants(budget: RetryBudget, tries: number): number {
    let granted = 0;
    for (let i = 0; i < tries; i++) if (budget.tryRetry()) granted++;
    return granted;
  }

  it('allows minRetriesPerWindow retries with no traffic', () => {
    expect(grants(budgetAt().budget, 50)).toBe(10);
  });

  it('allows ratio * requests retries once that exceeds the minimum', () => {
    const { budget } = budgetAt();
    for (let i = 0; i < 100; i++) budget.recordRequest();
    expect(grants(budget, 50)).toBe(20);
  });

  it('weighs the previous window by its overlap with the sliding window', () => {
    const { budget, clock } = budgetAt({ ratio: 0.5, minRetriesPerWindow: 0 });
    for (let i = 0; i < 100; i++) budget.recordRequest();
    expect(grants(budget, 100)).toBe(50);
    // Half-way through the next window: 50 requests and 25 retries still count.
    clock.now = start + windowMs * 1.5;
    expect(grants(budget, 100)).toBe(0);
    for (let i = 0; i < 10; i++) budget.recordRequest();
    // 60 requests allow 30 retries: 25 weighed + 5 new.
    expect(grants(budget, 100)).toBe(5);
  });

  it('forgets everything after two windows', () => {
    const { budget, clock } = budgetAt({ minRetriesPerWindow: 3 });
    expect(grants(budget, 10)).toBe(3);
    clock.now = start + 2 * windowMs;
    expect(grants(budget, 10)).toBe(3);
  });

  it('never grants more than max(minRetriesPerWindow, ratio * requests) within a window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.boolean(), { maxLength: 300 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        (ops, ratio, minRetriesPerWindow) => {
          const { budget } = budgetAt({ ratio, minRetriesPerWindow });
          let requests = 0;
          let granted = 0;
          for (const isRequest of ops) {
            if (isRequest) {
              budget.recordRequest();
              requests++;
              continue;
            }
            const allowance = Math.max(minRetriesPerWindow, ratio * requests);
            // Granted exactly when one more retry stays within the allowance.
            expect(budget.tryRetry()).toBe(granted + 1 <= allowance);
            if (granted + 1 <= allowance) granted++;
          }
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });
});

describe('sleep', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('resolves after ms and leaves no timer or listener behind', async () => {
    jest.useFakeTimers();
    const controller = new AbortController();
    let done = false;
    const waiting = sleep(1_000, controller.signal).then(() => {
      done = true;
    });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    await waiting;
    expect(done).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects at once with an AbortError when the signal aborts, clearing its timer', async () => {
    jest.useFakeTimers();
    const controller = new AbortController();
    const waiting = sleep(60_000, controller.signal);
    expect(jest.getTimerCount()).toBe(1);
    const reason = new Error('client left');
    controller.abort(reason);
    const error = await waiting.catch((err: unknown) => err);
    expect(isAbortError(error)).toBe(true);
    expect(error).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reason });
    expect(jest.getTimerCount()).toBe(0);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects without starting a timer when the signal is already aborted', async () => {
    jest.useFakeTimers();
    const signal = AbortSignal.abort();
    await expect(sleep(1_000, signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(jest.getTimerCount()).toBe(0);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('unrefs its timer, so a pending wait does not keep the process alive', async () => {
    const controller = new AbortController();
    // Only the timer sleep() makes is looked at, not the worker's.
    const timers = watchResources(['Timeout']);
    let waiting: Promise<unknown>;
    try {
      waiting = sleep(60_000, controller.signal).catch(() => undefined);
      expect(timers.live('Timeout')).toBe(1);
      expect(timers.live('Timeout', { refed: true })).toBe(0);
    } finally {
      timers.stop();
    }
    controller.abort();
    await waiting;
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, MAX_SLEEP_MS + 1])('refuses ms = %d', async (ms) => {
    await expect(sleep(ms)).rejects.toThrow(TypeError);
  });
});
