// The key store's pure helpers: the GCRA rate window (properties over random timed requests),
// UTC day arithmetic whatever the host's TZ, and `*` globs for model allow-lists.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { GCRA_WINDOW_MS, gcraAdjust, gcraConsume, gcraState } from '../lib/keys/gcra.js';
import { globMatches, modelAllowed } from '../lib/keys/glob.js';
import { MS_PER_UTC_DAY, msUntilNextUtcMidnight, utcDay, utcDayNumber } from '../lib/keys/utc.js';
import { fuzzRuns } from './support/fuzz.js';

/** A real epoch time, so float rounding at this magnitude is exercised. */
const T0 = Date.parse('2026-03-29T00:59:59Z');

interface Timed {
  gapMs: number;
  cost: number;
}

const limitArb = fc.integer({ min: 1, max: 120 });
const requestsArb = (maxCost: number) =>
  fc.array(
    fc.record({ gapMs: fc.integer({ min: 0, max: 20_000 }), cost: fc.integer({ min: 0, max: maxCost }) }),
    {
      maxLength: 150,
    },
  );

/** Runs `requests` through one window; returns what was admitted and the final state. */
function simulate(limit: number, requests: readonly Timed[]) {
  let tatMs = 0;
  let nowMs = T0;
  const admitted: { atMs: number; cost: number }[] = [];
  for (const { gapMs, cost } of requests) {
    nowMs += gapMs;
    const decision = gcraConsume(tatMs, cost, nowMs, limit);
    if (decision.allowed) {
      tatMs = decision.tatMs;
      admitted.push({ atMs: nowMs, cost });
    }
  }
  return { tatMs, nowMs, admitted };
}

describe('gcraConsume', () => {
  it('admits a whole limit at once on a fresh window, then one unit per 60 000 / limit ms', () => {
    let tatMs = 0;
    for (let i = 0; i < 4; i++) {
      const decision = gcraConsume(tatMs, 1, T0, 4);
      expect(decision.allowed).toBe(true);
      if (decision.allowed) tatMs = decision.tatMs;
    }
    expect(gcraConsume(tatMs, 1, T0, 4)).toEqual({ allowed: false, retryAfterMs: 15_000 });
    expect(gcraConsume(tatMs, 1, T0 + 14_999, 4).allowed).toBe(false);
    expect(gcraConsume(tatMs, 1, T0 + 15_000, 4).allowed).toBe(true);
    expect(gcraConsume(tatMs, 4, T0 + GCRA_WINDOW_MS, 4).allowed).toBe(true);
  });

  it('refuses a cost above the whole limit with no retry-after: waiting cannot help', () => {
    expect(gcraConsume(0, 61, T0, 60)).toEqual({ allowed: false, retryAfterMs: undefined });
    expect(gcraConsume(0, 60, T0, 60).allowed).toBe(true);
  });

  it('over any span of L ms admits at most limit + L × limit / 60 000 units (a full burst, then the rate)', () => {
    fc.assert(
      fc.property(limitArb, requestsArb(130), (limit, requests) => {
        const { admitted } = simulate(limit, requests);
        for (let i = 0; i < admitted.length; i++) {
          let sum = 0;
          for (let j = i; j < admitted.length; j++) {
            sum += admitted[j]!.cost;
            const spanMs = admitted[j]!.atMs - admitted[i]!.atMs;
            expect(sum).toBeLessThanOrEqual(limit + (spanMs * limit) / GCRA_WINDOW_MS + 1e-6);
          }
        }
      }),
      { numRuns: fuzzRuns(200) },
    );
  });

  it('never asks for a negative wait, and the wait it names is exact to the ms', () => {
    fc.assert(
      fc.property(limitArb, requestsArb(130), fc.integer({ min: 0, max: 130 }), (limit, requests, cost) => {
        const { tatMs, nowMs } = simulate(limit, requests);
        const decision = gcraConsume(tatMs, cost, nowMs, limit);
        if (decision.allowed) return;
        if (cost > limit) {
          expect(decision.retryAfterMs).toBeUndefined();
          return;
        }
        const waitMs = decision.retryAfterMs!;
        expect(Number.isInteger(waitMs)).toBe(true);
        expect(waitMs).toBeGreaterThanOrEqual(1);
        expect(gcraConsume(tatMs, cost, nowMs + waitMs, limit).allowed).toBe(true);
        expect(gcraConsume(tatMs, cost, nowMs + waitMs - 1, limit).allowed).toBe(false);
      }),
      { numRuns: fuzzRuns(300) },
    );
  });
});

describe('gcraState', () => {
  it('names as remaining exactly the largest cost that fits now, and a reset that is never negative', () => {
    fc.assert(
      fc.property(
        limitArb,
        requestsArb(60),
        fc.integer({ min: 0, max: 90_000 }),
        (limit, requests, laterMs) => {
          const { tatMs, nowMs } = simulate(limit, requests);
          const at = nowMs + laterMs;
          const { remaining, resetMs } = gcraState(tatMs, at, limit);
          expect(Number.isInteger(remaining) && remaining >= 0 && remaining <= limit).toBe(true);
          expect(Number.isInteger(resetMs) && resetMs >= 0).toBe(true);
          expect(gcraConsume(tatMs, remaining, at, limit).allowed).toBe(true);
          if (remaining < limit) expect(gcraConsume(tatMs, remaining + 1, at, limit).allowed).toBe(false);
          expect(gcraState(tatMs, at + resetMs, limit).remaining).toBe(limit);
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });

  it('reports a fresh window as full with no reset', () => {
    expect(gcraState(0, T0, 10)).toEqual({ remaining: 10, resetMs: 0 });
  });
});

describe('gcraAdjust', () => {
  it('never moves the TAT below now, and a charge followed by the same refund is no change', () => {
    fc.assert(
      fc.property(
        limitArb,
        requestsArb(60),
        fc.integer({ min: -500, max: 500 }),
        fc.nat({ max: 500 }),
        (limit, requests, delta, charge) => {
          const { tatMs, nowMs } = simulate(limit, requests);
          expect(gcraAdjust(tatMs, delta, nowMs, limit)).toBeGreaterThanOrEqual(nowMs);
          const base = Math.max(tatMs, nowMs);
          const roundTrip = gcraAdjust(gcraAdjust(tatMs, charge, nowMs, limit), -charge, nowMs, limit);
          expect(roundTrip).toBeCloseTo(base, 3);
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });

  it('gives back an over-estimate so the freed units fit again at once', () => {
    const reserved = gcraConsume(0, 800, T0, 1000);
    expect(reserved.allowed).toBe(true);
    const tatMs = reserved.allowed ? reserved.tatMs : 0;
    expect(gcraConsume(tatMs, 300, T0, 1000).allowed).toBe(false);
    expect(gcraConsume(gcraAdjust(tatMs, -700, T0, 1000), 300, T0, 1000).allowed).toBe(true);
  });
});

describe('UTC days', () => {
  it.each([
    ['2026-03-28T23:59:59.999Z', '2026-03-28', 1],
    ['2026-03-29T00:00:00.000Z', '2026-03-29', MS_PER_UTC_DAY],
    ['2026-03-29T00:59:59.000Z', '2026-03-29', 23 * 3_600_000 + 1000],
    ['2026-03-29T01:00:00.000Z', '2026-03-29', 23 * 3_600_000],
    ['2026-11-01T04:00:00.000Z', '2026-11-01', 20 * 3_600_000],
    ['2026-11-01T06:00:00.000Z', '2026-11-01', 18 * 3_600_000],
    ['1969-12-31T23:59:59.999Z', '1969-12-31', 1],
    ['0001-01-01T00:00:00.000Z', '0001-01-01', MS_PER_UTC_DAY],
  ])('%s is on UTC day %s, %d ms before the next UTC midnight', (iso, day, untilMidnightMs) => {
    const ms = Date.parse(iso);
    expect(utcDay(ms)).toBe(day);
    expect(msUntilNextUtcMidnight(ms)).toBe(untilMidnightMs);
    expect(utcDayNumber(ms)).toBe(Math.floor(Date.parse(`${day}T00:00:00Z`) / MS_PER_UTC_DAY));
  });

  it('refuses an instant that is not a date', () => {
    expect(() => utcDay(Number.NaN)).toThrow(RangeError);
    expect(() => utcDay(Date.parse('+010000-01-01T00:00:00Z'))).toThrow(RangeError);
  });
});

describe('model globs', () => {
  it.each([
    ['gpt-4o', 'gpt-4o', true],
    ['gpt-4o', 'gpt-4o-mini', false],
    ['gpt-4o*', 'gpt-4o-mini', true],
    ['gpt-4o*', 'gpt-4o', true],
    ['*', '', true],
    ['*mini', 'gpt-4o-mini', true],
    ['gpt-*-mini', 'gpt-4o-mini', true],
    ['gpt-*-mini', 'gpt-mini', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['a*aa', 'aa', false],
    ['a**a', 'aa', true],
    ['gpt-4.o', 'gpt-4xo', false],
    ['gpt-4.o', 'gpt-4.o', true],
    ['(a|b)+', 'a', false],
    ['(a|b)+', '(a|b)+', true],
    ['[ab]?$^', '[ab]?$^', true],
  ])('%s against %s is %s', (pattern, model, expected) => {
    expect(globMatches(pattern, model)).toBe(expected);
  });

  it('agrees with a regular expression where only * is special', () => {
    const unit = fc.constantFrom('a', 'b', '.', '+', '?', '(', ')', '[', ']', '\\', '$', '^', '|', '{', '}');
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    fc.assert(
      fc.property(
        fc.string({ unit: fc.oneof(unit, fc.constant('*')), maxLength: 8 }),
        fc.string({ unit, maxLength: 10 }),
        (pattern, text) => {
          const reference = new RegExp(`^${pattern.split('*').map(escape).join('[\\s\\S]*')}$`);
          expect(globMatches(pattern, text)).toBe(reference.test(text));
        },
      ),
      { numRuns: fuzzRuns(500) },
    );
  });

  it('allows everything with no list or an empty one, and a missing model only then', () => {
    expect(modelAllowed('anything', undefined)).toBe(true);
    expect(modelAllowed('anything', [])).toBe(true);
    expect(modelAllowed(undefined, undefined)).toBe(true);
    expect(modelAllowed(undefined, [])).toBe(true);
    expect(modelAllowed(undefined, ['*'])).toBe(false);
    expect(modelAllowed('o3', ['gpt-4o*', 'o3'])).toBe(true);
    expect(modelAllowed('o1', ['gpt-4o*', 'o3'])).toBe(false);
  });
});
