import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { MAX_RETRY_AFTER_HINT_MS, parseRetryAfterMs } from '../lib/retry/retry-after.js';
import { fuzzRuns } from './support/fuzz.js';

const NOW = Date.parse('2026-11-22T12:00:00Z');

describe('parseRetryAfterMs', () => {
  it.each([
    [{ 'retry-after': '7' }, 7_000],
    [{ 'retry-after': '1.5' }, 1_500],
    [{ 'retry-after': '0' }, 0],
    [{ 'retry-after-ms': '250' }, 250],
    [{ 'retry-after-ms': '250', 'retry-after': '9' }, 250],
    [{ 'retry-after': 'Sun, 22 Nov 2026 12:00:30 GMT' }, 30_000],
    [{ 'retry-after': 'Sun, 22 Nov 2026 11:00:00 GMT' }, 0],
    [{ 'retry-after': '-5' }, undefined],
    [{ 'retry-after': 'soon' }, undefined],
    [{ 'retry-after': '99999999999' }, MAX_RETRY_AFTER_HINT_MS],
    [{}, undefined],
  ])('reads %j as %s ms', (headers, expected) => {
    expect(parseRetryAfterMs(headers, NOW)).toBe(expected);
  });

  it('never throws and never yields a negative or unbounded wait', () => {
    fc.assert(
      fc.property(fc.option(fc.string()), fc.option(fc.string()), (a, b) => {
        const headers: Record<string, string | undefined> = {};
        if (a !== null) headers['retry-after'] = a;
        if (b !== null) headers['retry-after-ms'] = b;
        const ms = parseRetryAfterMs(headers, NOW);
        if (ms !== undefined) {
          expect(Number.isFinite(ms)).toBe(true);
          expect(ms).toBeGreaterThanOrEqual(0);
          expect(ms).toBeLessThanOrEqual(MAX_RETRY_AFTER_HINT_MS);
        }
      }),
      { numRuns: fuzzRuns(500) },
    );
  });
});
