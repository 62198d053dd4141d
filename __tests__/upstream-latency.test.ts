// The latency strategy (power of two choices over time to first byte × load) on fake candidates
// with an injected rng and clock, then end to end: a pool over a slow and a fast loopback mock,
// where the slow one gets measurably less traffic and is probed again once its figure is stale.
// Also the reader of the upstreams' rate-limit headers the pool learns from.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import fc from 'fast-check';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay, type StreamRelay } from '../lib/middleware/stream-relay.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { UpstreamPool } from '../lib/upstream/pool.js';
import { durationMs, readRateLimits } from '../lib/upstream/rate-limits.js';
import { createStrategy, LATENCY_STALE_MS, type StrategyCandidate } from '../lib/upstream/strategies.js';
import { chat } from './support/http.js';
import { fuzzRuns } from './support/fuzz.js';

const T0 = Date.parse('2026-12-04T12:00:00.000Z');

/** A candidate as the pool offers it: measured `latencyMs` ago… by default just now. */
function candidate(index: number, fields: Partial<StrategyCandidate> = {}): StrategyCandidate {
  return { index, weight: 1, inFlight: 0, lastPickSeq: 0, latencyMs: 100, latencyAtMs: T0, ...fields };
}

/** An rng that returns `values` in turn (then fails, so a test sees every draw it scripted). */
function scripted(...values: number[]): () => number {
  let next = 0;
  return () => {
    if (next >= values.length) throw new Error(`the strategy drew more than ${values.length} numbers`);
    return values[next++]!;
  };
}

/** The latency strategy on a clock stuck at `nowMs` (T0 by default). */
function latency(random: () => number, nowMs = T0) {
  return createStrategy('latency', { upstreamCount: 8, random, clock: () => nowMs });
}

/**
 * `offered` with their reads of `latencyMs` recorded: the strategy reads it on exactly the two it
 * compares, so `compared()` tells which pair a pick looked at.
 */
function watched(offered: readonly StrategyCandidate[]) {
  const reads: number[] = [];
  const candidates = offered.map((c) => ({
    ...c,
    get latencyMs() {
      reads.push(c.index);
      return c.latencyMs;
    },
  }));
  return {
    candidates,
    compared: () => {
      const pair = [...new Set(reads)].sort((x, y) => x - y);
      reads.length = 0;
      return pair;
    },
  };
}

describe('latency strategy (power of two choices)', () => {
  it('picks the lower latency of the two it draws, not the lowest of all', () => {
    // Draws index 0, then index 0 of the other two (→ 1): A and B are compared; C never is.
    const strategy = latency(scripted(0, 0));
    const [a, b, c] = [
      candidate(0, { latencyMs: 300 }),
      candidate(1, { latencyMs: 200 }),
      candidate(2, { latencyMs: 10 }),
    ];
    expect(strategy.pick([a, b, c])).toBe(b);
  });

  it('weighs latency by the attempts in flight plus one', () => {
    // Cost: 100 × (0 + 1) = 100 against 40 × (2 + 1) = 120.
    const idle = candidate(0, { latencyMs: 100, inFlight: 0 });
    const busy = candidate(1, { latencyMs: 40, inFlight: 2 });
    expect(latency(scripted(0, 0)).pick([idle, busy])).toBe(idle);
    // One in flight less: 40 × 2 = 80 < 100.
    expect(latency(scripted(0, 0)).pick([idle, { ...busy, inFlight: 1 }]).index).toBe(1);
  });

  it('breaks a tie of cost by the least recently picked', () => {
    const recent = candidate(0, { latencyMs: 50, lastPickSeq: 9 });
    const older = candidate(1, { latencyMs: 50, lastPickSeq: 4 });
    expect(latency(scripted(0, 0)).pick([recent, older])).toBe(older);
    expect(latency(scripted(0.9, 0)).pick([recent, older])).toBe(older);
  });

  it('probes an unmeasured candidate ahead of a measured one, one probe at a time', () => {
    const fast = candidate(0, { latencyMs: 1 });
    const fresh = candidate(1, { latencyMs: 0, latencyAtMs: 0 });
    expect(latency(scripted(0, 0)).pick([fast, fresh])).toBe(fresh);
    // Its probe is out: the measured one serves until the probe answers.
    expect(latency(scripted(0, 0)).pick([fast, { ...fresh, inFlight: 1 }])).toBe(fast);
    // Even a very slow, very busy measured one beats a second probe.
    const slowBusy = candidate(0, { latencyMs: 60_000, inFlight: 50 });
    expect(latency(scripted(0, 0)).pick([slowBusy, { ...fresh, inFlight: 1 }])).toBe(slowBusy);
  });

  it('probes a candidate whose figure is older than LATENCY_STALE_MS, and only then', () => {
    const fast = candidate(0, { latencyMs: 5, latencyAtMs: T0 + LATENCY_STALE_MS + 1 });
    const slow = candidate(1, { latencyMs: 500, latencyAtMs: T0 });
    const now = T0 + LATENCY_STALE_MS + 1;
    // Stale by 1 ms: probed, since nothing is in flight on it.
    expect(latency(scripted(0, 0), now).pick([fast, slow])).toBe(slow);
    expect(latency(scripted(0, 0), now).pick([fast, { ...slow, inFlight: 1 }])).toBe(fast);
    // Exactly LATENCY_STALE_MS old is still trusted: the fast one serves.
    expect(latency(scripted(0, 0), now - 1).pick([fast, slow])).toBe(fast);
  });

  it('falls back to the least recently picked when both drawn are probes already out', () => {
    const a = candidate(0, { latencyMs: 0, inFlight: 1, lastPickSeq: 2 });
    const b = candidate(1, { latencyMs: 0, inFlight: 1, lastPickSeq: 1 });
    expect(latency(scripted(0, 0)).pick([a, b])).toBe(b);
  });

  it('returns the only candidate without drawing a number', () => {
    const only = candidate(3);
    expect(latency(scripted()).pick([only])).toBe(only);
  });

  it('draws every ordered pair of distinct candidates equally often over an even grid of numbers', () => {
    const { candidates, compared } = watched([0, 1, 2].map((i) => candidate(i)));
    const pairs: string[] = [];
    for (const first of [0, 1 / 3, 2 / 3]) {
      for (const second of [0, 1 / 2]) {
        latency(scripted(first, second)).pick(candidates);
        pairs.push(compared().join('+'));
      }
    }
    // Six draws, the three unordered pairs twice each, never a candidate against itself.
    expect(pairs.sort()).toEqual(['0+1', '0+1', '0+2', '0+2', '1+2', '1+2']);
  });

  it('always compares two distinct candidates and returns one of them, whatever the rng yields', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 9 }),
        // Numbers in [0, 1], 1 included: a badly written fake must not push a pick out of range.
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(fc.record({ latencyMs: fc.nat(1_000), inFlight: fc.nat(5), stale: fc.boolean() }), {
          minLength: 9,
          maxLength: 9,
        }),
        (count, first, second, fields) => {
          const { candidates, compared } = watched(
            fields.slice(0, count).map((f, i) =>
              candidate(i, {
                latencyMs: f.latencyMs,
                inFlight: f.inFlight,
                latencyAtMs: f.stale ? T0 - LATENCY_STALE_MS - 1 : T0,
              }),
            ),
          );
          const chosen = latency(scripted(first, second)).pick(candidates);
          const pair = compared();
          expect(pair).toHaveLength(2);
          expect(candidates).toContain(chosen);
          expect(pair).toContain(chosen.index);
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });
});

describe('latency strategy end to end: a slow and a fast upstream', () => {
  /** The slow mock's time to first byte. */
  const SLOW_MS = 150;
  let slow: MockUpstream;
  let fast: MockUpstream;
  let now: number;
  let pool: UpstreamPool;
  let relay: StreamRelay;
  let app: express.Express;

  beforeAll(async () => {
    [slow, fast] = await Promise.all([createMockUpstream(), createMockUpstream()]);
  });
  afterAll(async () => {
    await relay?.close();
    await Promise.all([slow.close(), fast.close()]);
  });
  beforeEach(async () => {
    await relay?.close();
    slow.reset();
    fast.reset();
    slow.setBehaviour({ delayBeforeHeadersMs: SLOW_MS });
    now = T0;
    pool = new UpstreamPool({
      upstreams: [
        { url: `${slow.url}/v1`, name: 'slow' },
        { url: `${fast.url}/v1`, name: 'fast' },
      ],
      strategy: 'latency',
      clock: () => now,
      // With two candidates both are always compared; the rng only orders a tie.
      random: () => 0.5,
    });
    relay = streamRelay({ upstream: pool });
    app = express();
    app.post('/v1/chat/completions', bodyLimit(), relay);
  });

  const send = async (): Promise<void> => {
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
  };
  const served = () => ({ slow: slow.requests.length, fast: fast.requests.length });
  const latencyOf = (name: string) => pool.status().find((s) => s.name === name)!.latencyMs;

  it('sends the slow upstream at most a quarter of the traffic (round-robin would send half)', async () => {
    // Warm-up: each is probed once, then the fast one is preferred.
    for (let i = 0; i < 4; i++) await send();
    expect(latencyOf('slow')).toBeGreaterThanOrEqual(SLOW_MS - 10);
    expect(latencyOf('fast')).toBeLessThan(latencyOf('slow')!);
    // Bursts of 4 at once: the fast one's cost is its latency × (in flight + 1); it stays under
    // the slow one's unless loopback answers take over SLOW_MS / 4 each.
    for (let burst = 0; burst < 6; burst++) await Promise.all(Array.from({ length: 4 }, send));
    for (let i = 0; i < 8; i++) await send();
    const { slow: toSlow, fast: toFast } = served();
    expect(toSlow + toFast).toBe(36);
    // Deterministically 1 (its probe) on an idle machine; the bound leaves room for a loaded one.
    expect(toSlow).toBeGreaterThanOrEqual(1);
    expect(toSlow).toBeLessThanOrEqual(9);
  });

  it('probes the slow upstream again once its figure is older than LATENCY_STALE_MS', async () => {
    for (let i = 0; i < 4; i++) await send();
    const before = served();
    expect(before.slow).toBe(1);
    // The fast one is measured again at T0 + 6 s; the slow one's figure is from T0.
    now += 6_000;
    await send();
    expect(served().slow).toBe(before.slow);
    now += LATENCY_STALE_MS - 6_000; // the slow figure is exactly LATENCY_STALE_MS old: still trusted
    await send();
    expect(served().slow).toBe(before.slow);
    now += 1;
    await send();
    expect(served().slow).toBe(before.slow + 1);
    expect(latencyOf('slow')).toBeGreaterThanOrEqual(SLOW_MS - 10);
    // Measured again, and slow again: the fast one serves.
    for (let i = 0; i < 3; i++) await send();
    expect(served().slow).toBe(before.slow + 1);
  });
});

describe('readRateLimits', () => {
  it.each<[string, number | undefined]>([
    ['20ms', 20],
    ['1s', 1_000],
    ['1.5s', 1_500],
    ['6m0s', 360_000],
    ['1h2m3.5s', 3_723_500],
    ['2h0m0s', 7_200_000],
    ['0s', 0],
    ['0.4ms', 1],
    ['48h0m0s', 86_400_000],
    ['', undefined],
    ['   ', undefined],
    ['soon', undefined],
    ['60', undefined],
    ['-1s', undefined],
    ['1s2m', undefined],
    ['1.2.3s', undefined],
    ['1e3s', undefined],
    ['1'.repeat(40) + 's', undefined],
  ])('reads the duration %p as %p ms', (text, ms) => {
    expect(durationMs(text)).toBe(ms);
    const limits = readRateLimits(
      {
        'x-ratelimit-limit-requests': '100',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': text,
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0, resetMs: ms });
  });

  it("reads OpenAI's headers: the smallest share left and that window's reset", () => {
    const limits = readRateLimits(
      {
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '250',
        'x-ratelimit-reset-requests': '1m0s',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '300',
        'x-ratelimit-reset-tokens': '20ms',
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0.01, resetMs: 20 });
  });

  it("reads Anthropic's RFC 3339 reset instants as ms from now", () => {
    const limits = readRateLimits(
      {
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '40',
        'anthropic-ratelimit-requests-reset': '2026-12-04T12:00:05Z',
        'anthropic-ratelimit-input-tokens-limit': '40000',
        'anthropic-ratelimit-input-tokens-remaining': '1000',
        // Another offset, fractional seconds: the same kind of instant.
        'anthropic-ratelimit-input-tokens-reset': '2026-12-04T13:00:42.250+01:00',
        'anthropic-ratelimit-output-tokens-limit': '8000',
        'anthropic-ratelimit-output-tokens-remaining': '4000',
        'anthropic-ratelimit-output-tokens-reset': '2026-12-04T12:00:01Z',
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0.025, resetMs: 42_250 });
  });

  it.each<[string, string, number | undefined]>([
    ['an instant already past', '2026-12-04T11:59:00Z', 0],
    ['an instant more than a day ahead', '2026-12-09T12:00:00Z', 86_400_000],
    ['a malformed instant', 'tomorrow-ish', undefined],
    ['a duration where an instant belongs', '20s', undefined],
    // Date.parse reads a bare "1" as the year 2001: a reset of 0 would cool a 429 for nothing.
    ['a bare number where an instant belongs', '1', undefined],
  ])('reads %s (%p) as a reset of %p ms', (_name, reset, resetMs) => {
    const limits = readRateLimits(
      {
        'anthropic-ratelimit-tokens-limit': '100',
        'anthropic-ratelimit-tokens-remaining': '0',
        'anthropic-ratelimit-tokens-reset': reset,
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0, resetMs });
  });

  it('lets the smallest share win across both families of headers', () => {
    const limits = readRateLimits(
      {
        'x-ratelimit-limit-requests': '100',
        'x-ratelimit-remaining-requests': '10',
        'x-ratelimit-reset-requests': '6s',
        'anthropic-ratelimit-tokens-limit': '1000',
        'anthropic-ratelimit-tokens-remaining': '20',
        'anthropic-ratelimit-tokens-reset': '2026-12-04T12:00:30Z',
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0.02, resetMs: 30_000 });
  });

  it.each<[string, Record<string, string | string[]>]>([
    ['no headers at all', {}],
    ['only other headers', { 'x-request-id': 'req_1', 'openai-processing-ms': '12' }],
    [
      'a limit and a reset but no remaining',
      { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-reset-requests': '1s' },
    ],
    [
      'a malformed remaining',
      { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': 'lots' },
    ],
    ['a negative remaining', { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '-1' }],
    ['an empty remaining', { 'x-ratelimit-remaining-tokens': '' }],
    ['an absurdly long remaining', { 'x-ratelimit-remaining-tokens': '9'.repeat(21) }],
  ])('is undefined for %s', (_name, headers) => {
    expect(readRateLimits(headers, T0)).toBeUndefined();
  });

  it.each<[string, string | undefined, string, number]>([
    ['a limit of 0 with nothing left', '0', '0', 0],
    ['a limit of 0 with some left', '0', '5', 1],
    ['no limit with nothing left', undefined, '0', 0],
    ['no limit with some left', undefined, '7', 1],
    ['a malformed limit with some left', 'n/a', '7', 1],
    ['more left than the limit', '10', '25', 1],
  ])('reads %s (limit %p, remaining %p) as a share of %p', (_name, limit, remaining, headroom) => {
    const headers: Record<string, string> = { 'x-ratelimit-remaining-requests': remaining };
    if (limit !== undefined) headers['x-ratelimit-limit-requests'] = limit;
    expect(readRateLimits(headers, T0)).toEqual({ headroom, resetMs: undefined });
  });

  it('takes the later reset when two windows are equally spent: the member is short until both reset', () => {
    const limits = readRateLimits(
      {
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '1s',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '0',
        'x-ratelimit-reset-tokens': '6m0s',
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0, resetMs: 360_000 });
  });

  it('reads the first of repeated header values', () => {
    const limits = readRateLimits(
      {
        'x-ratelimit-limit-requests': ['100', '5'],
        'x-ratelimit-remaining-requests': ['1', '5'],
        'x-ratelimit-reset-requests': ['2s', '9s'],
      },
      T0,
    );
    expect(limits).toEqual({ headroom: 0.01, resetMs: 2_000 });
  });
});
