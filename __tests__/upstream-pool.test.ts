// UpstreamPool: strategies, exclusion, cooldowns, half-open probes, daily caps, concurrency caps and
// status(), all on an injected clock and rng (no sleeps, no timers).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { RequestContext } from '../lib/context.js';
import type { UpstreamErrorCategory } from '../lib/index.js';
import { LlmuxError } from '../lib/index.js';
import { UpstreamPool, upstreamPool, type UpstreamPoolOptions } from '../lib/upstream/pool.js';
import type { AttemptOutcome, UpstreamEndpoint } from '../lib/upstream/source.js';
import type { UpstreamStrategy } from '../lib/upstream/strategies.js';
import { fuzzRuns } from './support/fuzz.js';

const T0 = Date.parse('2026-03-28T12:00:00.000Z');
const ctx = new RequestContext('pool-test');
const OK: AttemptOutcome = { ok: true };
const failure = (
  category: UpstreamErrorCategory,
  status?: number,
  retryAfterMs?: number,
): AttemptOutcome => ({
  ok: false,
  category,
  status,
  retryAfterMs,
});
const SERVER_ERROR = failure('server', 500);

/** A pool on a fake clock; `clock.now` is moved by the tests. */
function makePool(
  names: string[],
  options: Partial<UpstreamPoolOptions> & { perUpstream?: Record<string, object> } = {},
) {
  const clock = { now: T0 };
  const { perUpstream, ...rest } = options;
  const pool = new UpstreamPool({
    upstreams: names.map((name) => ({
      url: `https://${name}.example.com/v1`,
      apiKey: `sk-${name}-0123456789abcdef`,
      name,
      ...perUpstream?.[name],
    })),
    clock: () => clock.now,
    ...rest,
  });
  const byName = (name: string): UpstreamEndpoint => pool.endpoints.find((e) => e.name === name)!;
  const stateOf = (name: string) => pool.status().find((s) => s.name === name)!;
  /** acquire + release(ok) `n` times; returns the names picked in order. */
  const cycle = (n: number, exclude?: UpstreamEndpoint): string[] => {
    const picked: string[] = [];
    for (let i = 0; i < n; i++) {
      const e = pool.acquire(ctx, exclude);
      picked.push(e.name);
      pool.release(e, OK);
    }
    return picked;
  };
  /** Acquires `name` specifically (it must be the next pick) and releases it with `outcome`. */
  const hit = (name: string, outcome: AttemptOutcome): void => {
    const e = pool.acquire(ctx);
    expect(e.name).toBe(name);
    pool.release(e, outcome);
  };
  return { pool, clock, byName, stateOf, cycle, hit };
}

function counts(names: string[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const n of names) result[n] = (result[n] ?? 0) + 1;
  return result;
}

function catchError(fn: () => unknown): LlmuxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LlmuxError);
    return err as LlmuxError;
  }
  throw new Error('expected a throw');
}

/** mulberry32: a small seeded rng, so the random strategy's test is deterministic. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('UpstreamPool endpoints', () => {
  it('parses base URLs, names endpoints host#index by default and keeps their identity', () => {
    const pool = upstreamPool({
      upstreams: [{ url: 'https://api.openai.com/v1/', apiKey: 'sk-a' }, { url: 'http://localhost:8080' }],
    });
    expect(pool.endpoints).toEqual([
      { name: 'api.openai.com#0', origin: 'https://api.openai.com', basePath: '/v1', apiKey: 'sk-a' },
      { name: 'localhost:8080#1', origin: 'http://localhost:8080', basePath: '', apiKey: undefined },
    ]);
    const seen = new Set<UpstreamEndpoint>();
    for (let i = 0; i < 6; i++) {
      const e = pool.acquire(ctx);
      seen.add(e);
      pool.release(e, OK);
    }
    expect([...seen]).toEqual(pool.endpoints);
    expect([...seen].every((e, i) => e === pool.endpoints[i])).toBe(true);
  });

  it.each<[string, unknown, RegExp]>([
    ['no upstreams', { upstreams: [] }, /upstreams must be a non-empty array/],
    [
      'a bad url',
      { upstreams: [{ url: 'ftp://x' }] },
      /upstreams\[0\].*url must be an absolute http\(s\) URL/,
    ],
    ['a zero weight', { upstreams: [{ url: 'https://a', weight: 0 }] }, /upstreams\[0\]\.weight .* got 0/],
    [
      'a fractional maxConcurrent',
      { upstreams: [{ url: 'https://a', maxConcurrent: 1.5 }] },
      /upstreams\[0\]\.maxConcurrent must be a positive integer, got 1.5/,
    ],
    [
      'a negative dailyRequestCap',
      { upstreams: [{ url: 'https://a', dailyRequestCap: -1 }] },
      /dailyRequestCap must be a positive integer, got -1/,
    ],
    [
      'duplicate names',
      {
        upstreams: [
          { url: 'https://a', name: 'x' },
          { url: 'https://b', name: 'x' },
        ],
      },
      /upstreams\[1\]\.name must be unique, got "x" twice/,
    ],
    [
      'an empty apiKey',
      { upstreams: [{ url: 'https://a', apiKey: '' }] },
      /apiKey must be a non-empty string/,
    ],
    [
      'an unknown strategy',
      { upstreams: [{ url: 'https://a' }], strategy: 'fastest' },
      /strategy .* got "fastest"/,
    ],
    [
      'a zero failure threshold',
      { upstreams: [{ url: 'https://a' }], cooldown: { failureThreshold: 0 } },
      /cooldown\.failureThreshold must be a positive integer, got 0/,
    ],
    [
      'a negative cooldown',
      { upstreams: [{ url: 'https://a' }], cooldown: { baseMs: -5 } },
      /cooldown\.baseMs must be a non-negative integer, got -5/,
    ],
    [
      'a clock that is not a function',
      { upstreams: [{ url: 'https://a' }], clock: 5 },
      /clock must be a function/,
    ],
  ])('refuses %s with a TypeError naming the option', (_label, options, message) => {
    expect(() => new UpstreamPool(options as UpstreamPoolOptions)).toThrow(TypeError);
    expect(() => new UpstreamPool(options as UpstreamPoolOptions)).toThrow(message);
  });

  it('never echoes an invalid apiKey in its error', () => {
    expect(() =>
      upstreamPool({ upstreams: [{ url: 'https://a', apiKey: 42 as unknown as string }] }),
    ).toThrow('got number');
  });
});

describe('strategies', () => {
  it('round-robin cycles evenly over three upstreams', () => {
    const { cycle } = makePool(['a', 'b', 'c']);
    const picked = cycle(300);
    expect(picked.slice(0, 6)).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
    expect(counts(picked)).toEqual({ a: 100, b: 100, c: 100 });
  });

  it('round-robin gives an upstream back from a cooldown one turn, not a burst', () => {
    const { pool, clock, cycle, byName } = makePool(['a', 'b', 'c']);
    const e = pool.acquire(ctx);
    expect(e).toBe(byName('a'));
    pool.release(e, failure('rate_limit', 429, 10_000));
    expect(cycle(20)).toEqual(Array.from({ length: 10 }, () => ['b', 'c']).flat());
    clock.now += 10_000;
    expect(cycle(9)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('round-robin spreads concurrent acquires over all upstreams', () => {
    const { pool } = makePool(['a', 'b', 'c']);
    expect([pool.acquire(ctx), pool.acquire(ctx), pool.acquire(ctx)].map((e) => e.name)).toEqual([
      'a',
      'b',
      'c',
    ]);
    expect(pool.inFlightTotal()).toBe(3);
  });

  it('weighted 3:1 gives exactly 3:1 over 400 picks, spread smoothly', () => {
    const { cycle } = makePool(['heavy', 'light'], {
      strategy: 'weighted',
      perUpstream: { heavy: { weight: 3 }, light: { weight: 1 } },
    });
    const picked = cycle(400);
    expect(counts(picked)).toEqual({ heavy: 300, light: 100 });
    // Every window of 4 consecutive picks holds exactly one `light`.
    for (let i = 0; i + 4 <= picked.length; i += 4) {
      expect(picked.slice(i, i + 4).filter((n) => n === 'light')).toHaveLength(1);
    }
  });

  it('weighted honours fractional weights exactly per period', () => {
    const { cycle } = makePool(['a', 'b', 'c'], {
      strategy: 'weighted',
      perUpstream: { a: { weight: 0.5 }, b: { weight: 1 }, c: { weight: 2.5 } },
    });
    expect(counts(cycle(400))).toEqual({ a: 50, b: 100, c: 250 });
  });

  it('random is roughly uniform with a seeded rng', () => {
    const { cycle } = makePool(['a', 'b', 'c', 'd'], { strategy: 'random', random: seededRandom(42) });
    const tally = counts(cycle(8000));
    for (const name of ['a', 'b', 'c', 'd']) {
      expect(tally[name]).toBeGreaterThan(1800);
      expect(tally[name]).toBeLessThan(2200);
    }
  });

  it('random survives an rng that returns 1', () => {
    const { pool } = makePool(['a', 'b'], { strategy: 'random', random: () => 1 });
    expect(pool.acquire(ctx).name).toBe('b');
  });

  it('least-connections picks the least loaded, ties by least recently used', () => {
    const { pool, byName } = makePool(['a', 'b', 'c'], { strategy: 'least-connections' });
    const a1 = pool.acquire(ctx); // a (all at 0, a least recent)
    const b1 = pool.acquire(ctx); // b
    const c1 = pool.acquire(ctx); // c
    expect([a1, b1, c1]).toEqual([byName('a'), byName('b'), byName('c')]);
    const a2 = pool.acquire(ctx); // all at 1: a is least recently used
    expect(a2).toBe(byName('a'));
    pool.release(b1, OK); // a:2 b:0 c:1
    expect(pool.acquire(ctx)).toBe(byName('b'));
    pool.release(c1, OK);
    pool.release(a1, OK); // a:1 b:1 c:0
    expect(pool.acquire(ctx)).toBe(byName('c'));
    expect(pool.status().map((s) => s.inFlight)).toEqual([1, 1, 1]);
  });

  it('accepts a custom strategy and refuses a pick it did not offer', () => {
    const first: UpstreamStrategy = { name: 'first', pick: (candidates) => candidates[0]! };
    const { cycle } = makePool(['a', 'b'], { strategy: first });
    expect(cycle(3)).toEqual(['a', 'a', 'a']);
    const rogue = { name: 'rogue', pick: () => ({ index: 0, weight: 1, inFlight: 0, lastPickSeq: 0 }) };
    const { pool } = makePool(['a'], { strategy: rogue as unknown as UpstreamStrategy });
    expect(() => pool.acquire(ctx)).toThrow(/not offered/);
    expect(pool.inFlightTotal()).toBe(0);
  });
});

describe('exclude', () => {
  it('is honoured when another upstream is eligible', () => {
    const { cycle, byName } = makePool(['a', 'b', 'c']);
    expect(cycle(6, byName('a'))).toEqual(['b', 'c', 'b', 'c', 'b', 'c']);
  });

  it('is ignored when it is the only upstream', () => {
    const { cycle, byName } = makePool(['a']);
    expect(cycle(2, byName('a'))).toEqual(['a', 'a']);
  });

  it('is ignored when every other upstream is cooling', () => {
    const { pool, cycle, byName, hit } = makePool(['a', 'b'], { cooldown: { failureThreshold: 1 } });
    hit('a', OK);
    hit('b', SERVER_ERROR);
    expect(pool.status()[1]!.state).toBe('cooling');
    expect(cycle(2, byName('a'))).toEqual(['a', 'a']);
  });
});

describe('cooldown on 429', () => {
  it('cools for the upstream retryAfterMs', () => {
    const { clock, stateOf, cycle, hit } = makePool(['a', 'b']);
    hit('a', failure('rate_limit', 429, 12_000));
    expect(stateOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 12_000 });
    clock.now += 11_999;
    expect(cycle(3)).toEqual(['b', 'b', 'b']);
    clock.now += 1;
    expect(stateOf('a')).toMatchObject({ state: 'healthy', cooldownRemainingMs: 0 });
    expect(cycle(2)).toEqual(['a', 'b']);
  });

  it('cools for cooldown.rateLimitMs (30 s by default) when no hint was given', () => {
    const { stateOf, hit } = makePool(['a', 'b']);
    hit('a', failure('rate_limit', 429));
    expect(stateOf('a').cooldownRemainingMs).toBe(30_000);
    const custom = makePool(['a', 'b'], { cooldown: { rateLimitMs: 2_000 } });
    custom.hit('a', failure('rate_limit', 429));
    expect(custom.stateOf('a').cooldownRemainingMs).toBe(2_000);
  });

  it('caps the hint at cooldown.maxMs (10 min by default)', () => {
    const { stateOf, hit } = makePool(['a', 'b']);
    hit('a', failure('rate_limit', 429, 86_400_000));
    expect(stateOf('a').cooldownRemainingMs).toBe(600_000);
    const custom = makePool(['a', 'b'], { cooldown: { maxMs: 60_000 } });
    custom.hit('a', failure('rate_limit', 429, 90_000));
    expect(custom.stateOf('a').cooldownRemainingMs).toBe(60_000);
  });

  it('does not count toward the failure threshold', () => {
    const { stateOf, clock, hit } = makePool(['a'], { cooldown: { failureThreshold: 2 } });
    for (let i = 0; i < 5; i++) {
      hit('a', failure('rate_limit', 429, 1_000));
      clock.now += 1_000;
    }
    expect(stateOf('a')).toMatchObject({ state: 'healthy', consecutiveFailures: 0 });
  });
});

describe('auth failures', () => {
  it('a 401 disables the upstream until enable()', () => {
    const { pool, clock, stateOf, cycle, hit } = makePool(['a', 'b']);
    hit('a', failure('auth', 401));
    expect(stateOf('a').state).toBe('disabled');
    clock.now += 86_400_000 * 7;
    expect(cycle(4)).toEqual(['b', 'b', 'b', 'b']);
    expect(pool.enable('a')).toBe(true);
    expect(stateOf('a').state).toBe('healthy');
    expect(cycle(2)).toEqual(['a', 'b']);
  });

  it('disable() and enable() work by name and report unknown names', () => {
    const { pool, cycle, stateOf } = makePool(['a', 'b']);
    expect(pool.disable('a')).toBe(true);
    expect(stateOf('a').state).toBe('disabled');
    expect(cycle(2)).toEqual(['b', 'b']);
    expect(pool.enable('a')).toBe(true);
    expect(pool.disable('nope')).toBe(false);
    expect(pool.enable('nope')).toBe(false);
  });

  it('lets an attempt in flight finish on an upstream disabled meanwhile', () => {
    const { pool, stateOf } = makePool(['a']);
    const e = pool.acquire(ctx);
    pool.disable('a');
    pool.release(e, OK);
    expect(stateOf('a')).toMatchObject({ state: 'disabled', inFlight: 0 });
  });
});

describe('consecutive failures', () => {
  it.each<UpstreamErrorCategory>(['server', 'network', 'timeout'])(
    '%s failures trip a cooldown at the threshold',
    (category) => {
      const { stateOf, hit } = makePool(['a']);
      hit('a', failure(category));
      hit('a', failure(category));
      expect(stateOf('a')).toMatchObject({ state: 'healthy', consecutiveFailures: 2 });
      hit('a', failure(category));
      expect(stateOf('a')).toMatchObject({
        state: 'cooling',
        cooldownRemainingMs: 5_000,
        consecutiveFailures: 3,
      });
    },
  );

  it.each<UpstreamErrorCategory>(['invalid_request', 'decode', 'cancelled'])(
    '%s does not count against the upstream',
    (category) => {
      const { stateOf, hit } = makePool(['a'], { cooldown: { failureThreshold: 1 } });
      for (let i = 0; i < 5; i++) hit('a', failure(category, 400));
      expect(stateOf('a')).toMatchObject({ state: 'healthy', consecutiveFailures: 0 });
    },
  );

  it('a success in between restarts the count', () => {
    const { stateOf, hit } = makePool(['a']);
    hit('a', SERVER_ERROR);
    hit('a', SERVER_ERROR);
    hit('a', OK);
    hit('a', SERVER_ERROR);
    hit('a', SERVER_ERROR);
    expect(stateOf('a')).toMatchObject({ state: 'healthy', consecutiveFailures: 2 });
  });

  it('doubles the cooldown on each consecutive trip, up to cooldown.maxMs', () => {
    const { clock, stateOf, hit } = makePool(['a'], { cooldown: { baseMs: 1_000, maxMs: 10_000 } });
    for (let i = 0; i < 3; i++) hit('a', SERVER_ERROR);
    const durations: number[] = [];
    for (let trip = 0; trip < 6; trip++) {
      const { state, cooldownRemainingMs } = stateOf('a');
      expect(state).toBe('cooling');
      durations.push(cooldownRemainingMs);
      clock.now += cooldownRemainingMs;
      expect(stateOf('a').state).toBe('half-open');
      hit('a', SERVER_ERROR); // the probe fails: cools again, twice as long
    }
    expect(durations).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  });

  it('does not count failures of attempts that started before the trip', () => {
    const { pool, clock, stateOf } = makePool(['a'], { cooldown: { baseMs: 1_000 } });
    const leases = Array.from({ length: 6 }, () => pool.acquire(ctx));
    for (const lease of leases) pool.release(lease, SERVER_ERROR);
    expect(stateOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 1_000, inFlight: 0 });
    clock.now += 1_000;
    expect(stateOf('a').state).toBe('half-open');
  });
});

describe('half-open', () => {
  function tripped() {
    const harness = makePool(['a'], { cooldown: { failureThreshold: 2, baseMs: 1_000 } });
    harness.hit('a', SERVER_ERROR);
    harness.hit('a', SERVER_ERROR);
    harness.clock.now += 1_000;
    expect(harness.stateOf('a').state).toBe('half-open');
    return harness;
  }

  it('lets exactly one probe through', () => {
    const { pool } = tripped();
    const probe = pool.acquire(ctx);
    const err = catchError(() => pool.acquire(ctx));
    expect(err).toMatchObject({ status: 503, code: 'no_upstream_available', retryAfterSeconds: 1 });
    expect(pool.inFlightTotal()).toBe(1);
    pool.release(probe, OK);
  });

  it('heals on a successful probe: healthy, all attempts allowed, trips reset', () => {
    const { pool, clock, stateOf, hit } = tripped();
    hit('a', OK);
    expect(stateOf('a')).toMatchObject({ state: 'healthy', consecutiveFailures: 0 });
    const leases = [pool.acquire(ctx), pool.acquire(ctx), pool.acquire(ctx)];
    for (const lease of leases) pool.release(lease, OK);
    hit('a', SERVER_ERROR);
    hit('a', SERVER_ERROR);
    expect(stateOf('a').cooldownRemainingMs).toBe(1_000);
    clock.now += 1_000;
    expect(stateOf('a').state).toBe('half-open');
  });

  it('re-trips for the doubled duration when the probe fails', () => {
    const { clock, stateOf, hit } = tripped();
    hit('a', failure('network'));
    expect(stateOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 2_000 });
    clock.now += 2_000;
    expect(stateOf('a').state).toBe('half-open');
  });

  it('lets another probe go when the first ended for a reason that says nothing of the upstream', () => {
    const { pool, stateOf } = tripped();
    const probe = pool.acquire(ctx);
    pool.release(probe, failure('invalid_request', 400));
    expect(stateOf('a').state).toBe('half-open');
    const second = pool.acquire(ctx);
    pool.release(second, OK);
    expect(stateOf('a').state).toBe('healthy');
  });

  it('waits out a 429 on the probe, then probes again', () => {
    const { pool, clock, stateOf } = tripped();
    pool.release(pool.acquire(ctx), failure('rate_limit', 429, 3_000));
    expect(stateOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 3_000 });
    clock.now += 3_000;
    expect(stateOf('a').state).toBe('half-open');
  });
});

describe('daily request cap', () => {
  const savedTz = process.env.TZ;
  beforeAll(() => {
    // A zone far from UTC: a local-time bug would move the day boundary by 14 hours.
    process.env.TZ = 'Pacific/Kiritimati';
  });
  afterAll(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it('stops at the cap and resets at 00:00 UTC', () => {
    const { pool, clock, stateOf, cycle } = makePool(['a'], { perUpstream: { a: { dailyRequestCap: 2 } } });
    clock.now = Date.parse('2026-03-28T23:59:59.000Z');
    expect(cycle(2)).toEqual(['a', 'a']);
    expect(stateOf('a').requestsToday).toBe(2);
    expect(catchError(() => pool.acquire(ctx))).toMatchObject({
      status: 503,
      code: 'no_upstream_available',
      retryAfterSeconds: 1,
    });
    clock.now = Date.parse('2026-03-28T23:59:59.999Z');
    expect(() => pool.acquire(ctx)).toThrow(LlmuxError);
    clock.now = Date.parse('2026-03-29T00:00:00.000Z');
    expect(stateOf('a').requestsToday).toBe(0);
    expect(cycle(2)).toEqual(['a', 'a']);
    expect(() => pool.acquire(ctx)).toThrow(LlmuxError);
  });

  it('sends traffic to the other upstreams meanwhile and names the wait to midnight', () => {
    const { pool, clock, cycle } = makePool(['a', 'b'], {
      perUpstream: { a: { dailyRequestCap: 1 }, b: { dailyRequestCap: 3 } },
    });
    clock.now = Date.parse('2026-03-28T22:00:00.000Z');
    expect(cycle(4)).toEqual(['a', 'b', 'b', 'b']);
    expect(catchError(() => pool.acquire(ctx)).retryAfterSeconds).toBe(7_200);
  });
});

describe('no upstream available', () => {
  it('answers 503 no_upstream_available with Retry-After = the earliest recovery', () => {
    const { pool, hit, clock } = makePool(['a', 'b', 'c']);
    hit('a', failure('rate_limit', 429, 30_000));
    hit('b', failure('rate_limit', 429, 12_500));
    hit('c', failure('auth', 401));
    const err = catchError(() => pool.acquire(ctx));
    expect(err).toMatchObject({
      status: 503,
      type: 'overloaded_error',
      code: 'no_upstream_available',
      retryAfterSeconds: 13,
    });
    clock.now += 12_500;
    expect(pool.acquire(ctx).name).toBe('b');
  });

  it('answers a long Retry-After when every upstream is disabled', () => {
    const { pool, hit } = makePool(['a', 'b']);
    hit('a', failure('auth', 401));
    hit('b', failure('auth', 401));
    const err = catchError(() => pool.acquire(ctx));
    expect(err).toMatchObject({ status: 503, code: 'no_upstream_available', retryAfterSeconds: 60 });
    expect(err.message).toMatch(/disabled/);
  });

  it('never names a key in its message', () => {
    const { pool } = makePool(['a']);
    pool.disable('a');
    expect(JSON.stringify(catchError(() => pool.acquire(ctx)).toJSON())).not.toContain('sk-a-');
  });
});

describe('maxConcurrent', () => {
  it('caps attempts in flight per upstream and answers Retry-After 1 when all are full', () => {
    const { pool, byName } = makePool(['a', 'b'], {
      perUpstream: { a: { maxConcurrent: 1 }, b: { maxConcurrent: 2 } },
    });
    const leases = [pool.acquire(ctx), pool.acquire(ctx), pool.acquire(ctx)];
    expect(leases.map((e) => e.name).sort()).toEqual(['a', 'b', 'b']);
    expect(catchError(() => pool.acquire(ctx)).retryAfterSeconds).toBe(1);
    pool.release(byName('a'), OK);
    expect(pool.acquire(ctx)).toBe(byName('a'));
  });
});

describe('in-flight counts', () => {
  it('ignore a release with no attempt in flight: never negative, never counted twice', () => {
    const { pool, stateOf, byName } = makePool(['a', 'b'], { cooldown: { failureThreshold: 2 } });
    const e = pool.acquire(ctx);
    pool.release(e, SERVER_ERROR);
    pool.release(e, SERVER_ERROR);
    expect(stateOf('a')).toMatchObject({ inFlight: 0, consecutiveFailures: 1, state: 'healthy' });
    pool.release(byName('b'), OK);
    pool.release({ ...byName('b') }, OK);
    expect(pool.inFlightTotal()).toBe(0);
  });

  it('stay exact over random sequences of acquire, release and time', () => {
    const outcome = fc.oneof(
      fc.constant(OK),
      fc
        .constantFrom<UpstreamErrorCategory>(
          'server',
          'network',
          'timeout',
          'auth',
          'rate_limit',
          'invalid_request',
          'decode',
          'cancelled',
        )
        .map((category) => failure(category)),
      fc.nat({ max: 120_000 }).map((ms) => failure('rate_limit', 429, ms)),
    );
    const op = fc.oneof(
      fc.record({ kind: fc.constant('acquire' as const), exclude: fc.nat({ max: 4 }) }),
      fc.record({ kind: fc.constant('release' as const), which: fc.nat(), outcome }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.nat({ max: 60_000 }) }),
      fc.record({ kind: fc.constant('enable' as const), which: fc.nat({ max: 2 }) }),
    );
    const strategy = fc.constantFrom('round-robin', 'random', 'least-connections', 'weighted' as const);
    fc.assert(
      fc.property(strategy, fc.array(op, { maxLength: 200 }), fc.integer(), (strategyName, ops, seed) => {
        const { pool, clock } = makePool(['a', 'b', 'c'], {
          strategy: strategyName as UpstreamPoolOptions['strategy'],
          random: seededRandom(seed),
          perUpstream: {
            a: { maxConcurrent: 2, weight: 2 },
            b: { dailyRequestCap: 50 },
            c: { maxConcurrent: 5 },
          },
        });
        const outstanding: UpstreamEndpoint[] = [];
        const expected = () => pool.endpoints.map((e) => outstanding.filter((o) => o === e).length);
        for (const step of ops) {
          if (step.kind === 'acquire') {
            try {
              outstanding.push(pool.acquire(ctx, pool.endpoints[step.exclude]));
            } catch (err) {
              expect(err).toMatchObject({ status: 503, code: 'no_upstream_available' });
            }
          } else if (step.kind === 'release' && outstanding.length > 0) {
            const [endpoint] = outstanding.splice(step.which % outstanding.length, 1);
            pool.release(endpoint!, step.outcome);
          } else if (step.kind === 'tick') {
            clock.now += step.ms;
          } else if (step.kind === 'enable') {
            pool.enable(pool.endpoints[step.which]!.name);
          }
          const status = pool.status();
          expect(status.map((s) => s.inFlight)).toEqual(expected());
          expect(pool.inFlightTotal()).toBe(outstanding.length);
          expect(status[0]!.inFlight).toBeLessThanOrEqual(2);
          expect(status[2]!.inFlight).toBeLessThanOrEqual(5);
        }
        for (const endpoint of outstanding.splice(0)) pool.release(endpoint, OK);
        expect(pool.inFlightTotal()).toBe(0);
      }),
      { numRuns: fuzzRuns(200) },
    );
  });
});

describe('status()', () => {
  it('reports each upstream for a health page', () => {
    const { pool, hit } = makePool(['a', 'b'], { perUpstream: { a: { weight: 2, maxConcurrent: 4 } } });
    hit('a', SERVER_ERROR);
    pool.acquire(ctx);
    expect(pool.status()).toEqual([
      {
        name: 'a',
        origin: 'https://a.example.com',
        basePath: '/v1',
        key: 'sk-a…cdef',
        state: 'healthy',
        inFlight: 0,
        cooldownRemainingMs: 0,
        consecutiveFailures: 1,
        requestsToday: 1,
        weight: 2,
        maxConcurrent: 4,
        dailyRequestCap: null,
        latencyMs: null,
        nearLimit: false,
        model: null,
      },
      {
        name: 'b',
        origin: 'https://b.example.com',
        basePath: '/v1',
        key: 'sk-b…cdef',
        state: 'healthy',
        inFlight: 1,
        cooldownRemainingMs: 0,
        consecutiveFailures: 0,
        requestsToday: 1,
        weight: 1,
        maxConcurrent: null,
        dailyRequestCap: null,
        latencyMs: null,
        nearLimit: false,
        model: null,
      },
    ]);
  });

  it('never contains a full key', () => {
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{12,64}$/), { minLength: 1, maxLength: 4 }),
        (keys) => {
          const pool = upstreamPool({
            upstreams: keys.map((apiKey) => ({ url: 'https://api.example.com/v1', apiKey })),
          });
          pool.disable(pool.endpoints[0]!.name);
          const text = JSON.stringify(pool.status()) + JSON.stringify(pool);
          for (const key of keys) expect(text).not.toContain(key);
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });
});
