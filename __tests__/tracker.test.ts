// RequestTracker: a bounded ring of recent requests, per-model rollups whose averages are weighted
// over any window, percentiles within one histogram bucket, and a middleware recording once.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import express5 from 'express';
import fc from 'fast-check';
import http from 'node:http';
import request from 'supertest';
import { getContext } from '../lib/context.js';
import {
  bodyLimit,
  createMetrics,
  retry,
  streamRelay,
  upstreamPool,
  type LlmuxMetrics,
  type StreamRelayOptions,
} from '../lib/index.js';
import { recovery } from '../lib/middleware/recovery.js';
import { type Logger } from '../lib/log.js';
import {
  LATENCY_BUCKET_BOUNDS_MS,
  latencyBucketIndex,
  latencyBucketRange,
} from '../lib/tracking/histogram.js';
import type { RequestRecord } from '../lib/tracking/record.js';
import { RingBuffer } from '../lib/tracking/ring-buffer.js';
import { RequestTracker, type RequestTrackerOptions } from '../lib/tracking/tracker.js';
import { STATS_WINDOWS, type StatsWindow } from '../lib/tracking/windows.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat, listen, postAndLeave } from './support/http.js';
import { fuzzRuns } from './support/fuzz.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** A UTC midnight, so bucket arithmetic in the tests is easy to follow. */
const MIDNIGHT_MS = Date.parse('2025-06-01T00:00:00.000Z');

/** Each window's bucket length and bucket count, written out independently of the library. */
const WINDOWS: Record<StatsWindow, [periodMs: number, buckets: number]> = {
  minute: [MINUTE_MS, 1],
  hour: [HOUR_MS, 1],
  day: [DAY_MS, 1],
  '5m': [MINUTE_MS, 5],
  '15m': [MINUTE_MS, 15],
  '1h': [MINUTE_MS, 60],
  '6h': [HOUR_MS, 6],
  '24h': [HOUR_MS, 24],
  '48h': [HOUR_MS, 48],
  '7d': [DAY_MS, 7],
  '30d': [DAY_MS, 30],
};

const silentLogger: Logger = { error: () => undefined };

let sequence = 0;
function makeRecord(overrides: Partial<RequestRecord> = {}): RequestRecord {
  sequence++;
  return {
    id: `req-${sequence}`,
    timeMs: MIDNIGHT_MS,
    route: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    keyId: 'key-1',
    teamId: undefined,
    userId: undefined,
    status: 200,
    errorCode: undefined,
    stream: false,
    latencyMs: 100,
    ttfbMs: undefined,
    promptTokens: 10,
    completionTokens: 5,
    costUsd: 0.001,
    upstream: 'primary',
    attempts: 1,
    ...overrides,
  };
}

/** A tracker on a clock the test moves by hand. */
function manualTracker(options: RequestTrackerOptions = {}) {
  const time = { nowMs: MIDNIGHT_MS };
  const tracker = new RequestTracker({ clock: () => time.nowMs, logger: silentLogger, ...options });
  return { tracker, time };
}

const closeEnough = (actual: number | null, expected: number) =>
  actual !== null && Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));

describe('RequestTracker ring of recent records', () => {
  it('never holds more than its capacity and returns the newest after wrapping round', () => {
    const { tracker } = manualTracker({ capacity: 100 });
    const record = makeRecord();
    for (let i = 0; i < 1_000_000; i++) {
      record.id = `r${i}`;
      tracker.record(record);
    }
    expect(tracker.size).toBe(100);
    expect(tracker.capacity).toBe(100);
    const recent = tracker.recent(1000);
    expect(recent).toHaveLength(100);
    expect(recent[0]!.id).toBe('r999999');
    expect(recent[99]!.id).toBe('r999900');
    expect(tracker.recent(3).map((r) => r.id)).toEqual(['r999999', 'r999998', 'r999997']);
  });

  it('holds what was recorded before it fills, newest first', () => {
    const { tracker } = manualTracker({ capacity: 10 });
    for (const id of ['a', 'b', 'c']) tracker.record(makeRecord({ id }));
    expect(tracker.size).toBe(3);
    expect(tracker.recent().map((r) => r.id)).toEqual(['c', 'b', 'a']);
    expect(tracker.recent(0)).toEqual([]);
  });

  it('returns copies: changing one changes neither the tracker nor the next answer', () => {
    const { tracker } = manualTracker();
    const original = makeRecord({ id: 'mine' });
    tracker.record(original);
    original.status = 500;
    const first = tracker.recent(1)[0]!;
    first.status = 418;
    expect(tracker.recent(1)[0]!.status).toBe(200);
    expect(tracker.stats().errors).toBe(0);
  });

  it('matches a plain array model under any capacity and number of pushes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 300 }), (capacity, pushes) => {
        const ring = new RingBuffer<number>(capacity);
        for (let i = 0; i < pushes; i++) ring.push(i);
        const expected = Array.from({ length: pushes }, (_, i) => i)
          .slice(-capacity)
          .reverse();
        expect(ring.size).toBe(Math.min(capacity, pushes));
        expect(ring.newest(capacity + 5, (x) => x)).toEqual(expected);
      }),
      { numRuns: fuzzRuns(200) },
    );
  });
});

describe('RequestTracker rollups', () => {
  it('averages over any window are the mean of the raw records in it, across bucket boundaries', () => {
    const age = fc.oneof(
      fc.integer({ min: 0, max: 2 * HOUR_MS }),
      fc.integer({ min: 0, max: 3 * DAY_MS }),
      fc.integer({ min: 0, max: 40 * DAY_MS }),
    );
    const sample = fc.record({
      ageMs: age,
      latencyMs: fc.double({ min: 0, max: 700_000, noNaN: true }),
      ttfbMs: fc.option(fc.double({ min: 0, max: 10_000, noNaN: true }), { nil: undefined }),
      promptTokens: fc.nat(5000),
      completionTokens: fc.nat(5000),
      status: fc.constantFrom(0, 200, 200, 200, 429, 502),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: DAY_MS - 1 }),
        fc.array(sample, { minLength: 1, maxLength: 150 }),
        (phaseMs, samples) => {
          const nowMs = MIDNIGHT_MS + 60 * DAY_MS + phaseMs;
          const { tracker, time } = manualTracker();
          // Recorded in random order: the clock may go back within what the rollups keep.
          for (const s of samples) {
            time.nowMs = nowMs - s.ageMs;
            tracker.record(makeRecord(s));
          }
          time.nowMs = nowMs;
          for (const window of STATS_WINDOWS) {
            const [periodMs, buckets] = WINDOWS[window];
            const fromMs = (Math.floor(nowMs / periodMs) - buckets + 1) * periodMs;
            const inside = samples.filter((s) => nowMs - s.ageMs >= fromMs);
            const stats = tracker.stats({ window });
            expect(stats.fromMs).toBe(fromMs);
            expect(stats.count).toBe(inside.length);
            expect(stats.errors).toBe(inside.filter((s) => s.status !== 200).length);
            expect(stats.promptTokens).toBe(inside.reduce((sum, s) => sum + s.promptTokens, 0));
            expect(stats.totalTokens).toBe(
              inside.reduce((sum, s) => sum + s.promptTokens + s.completionTokens, 0),
            );
            if (inside.length === 0) {
              expect(stats.avgLatencyMs).toBeNull();
              continue;
            }
            const meanLatency = inside.reduce((sum, s) => sum + s.latencyMs, 0) / inside.length;
            expect(closeEnough(stats.avgLatencyMs, meanLatency)).toBe(true);
            const withTtfb = inside.filter((s) => s.ttfbMs !== undefined);
            if (withTtfb.length === 0) expect(stats.avgTtfbMs).toBeNull();
            else {
              const meanTtfb = withTtfb.reduce((sum, s) => sum + s.ttfbMs!, 0) / withTtfb.length;
              expect(closeEnough(stats.avgTtfbMs, meanTtfb)).toBe(true);
            }
          }
        },
      ),
      { numRuns: fuzzRuns(100) },
    );
  });

  it('weights a busy minute by its requests, not as one average among others', () => {
    const { tracker, time } = manualTracker();
    for (let i = 0; i < 99; i++) tracker.record(makeRecord({ latencyMs: 100 }));
    time.nowMs += MINUTE_MS;
    tracker.record(makeRecord({ latencyMs: 10_100 }));
    // Average of the two minute averages would be 5100; the weighted mean is 200.
    expect(tracker.stats({ window: '5m' }).avgLatencyMs).toBe(200);
    expect(tracker.stats({ window: 'hour' }).avgLatencyMs).toBe(200);
  });

  it('rotates buckets as time passes: old data leaves each window and reused buckets start empty', () => {
    const { tracker, time } = manualTracker();
    tracker.record(makeRecord({ latencyMs: 50 }));
    const count = (window: StatsWindow) => tracker.stats({ window }).count;
    expect(count('minute')).toBe(1);

    time.nowMs += 15 * MINUTE_MS;
    expect([count('minute'), count('15m'), count('1h'), count('hour')]).toEqual([0, 0, 1, 1]);

    time.nowMs = MIDNIGHT_MS + 60 * MINUTE_MS;
    expect([count('1h'), count('hour'), count('6h'), count('day')]).toEqual([0, 0, 1, 1]);

    // The minute bucket the first record used comes round again: it is zeroed before reuse.
    tracker.record(makeRecord({ latencyMs: 7 }));
    expect(tracker.stats({ window: 'minute' })).toMatchObject({ count: 1, avgLatencyMs: 7 });

    time.nowMs = MIDNIGHT_MS + 49 * HOUR_MS;
    expect([count('48h'), count('day'), count('7d')]).toEqual([0, 0, 2]);

    time.nowMs = MIDNIGHT_MS + 30 * DAY_MS;
    expect([count('30d'), count('7d')]).toEqual([0, 0]);
  });

  it('uses UTC days whatever the time zone', () => {
    const { tracker, time } = manualTracker();
    time.nowMs = Date.parse('2025-06-01T23:59:59.999Z');
    tracker.record(makeRecord());
    time.nowMs = Date.parse('2025-06-02T00:00:00.000Z');
    expect(tracker.stats({ window: 'day' })).toMatchObject({ count: 0, fromMs: time.nowMs });
    expect(tracker.stats({ window: '7d' }).count).toBe(1);
  });

  it('follows the default clock under fake timers', () => {
    jest.useFakeTimers({ now: MIDNIGHT_MS });
    try {
      const tracker = new RequestTracker({ logger: silentLogger });
      tracker.record(makeRecord());
      jest.advanceTimersByTime(2 * MINUTE_MS);
      expect(tracker.stats({ window: 'minute' }).count).toBe(0);
      expect(tracker.stats({ window: '5m' }).count).toBe(1);
    } finally {
      jest.useRealTimers();
    }
  });

  it('gives percentiles within one histogram bucket of the exact value', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 600_000, noNaN: true }), { minLength: 1, maxLength: 300 }),
        (latencies) => {
          const { tracker } = manualTracker();
          for (const latencyMs of latencies) tracker.record(makeRecord({ latencyMs }));
          const sorted = [...latencies].sort((a, b) => a - b);
          const stats = tracker.stats({ window: 'minute' });
          for (const [q, estimate] of [
            [0.5, stats.p50LatencyMs],
            [0.95, stats.p95LatencyMs],
            [0.99, stats.p99LatencyMs],
          ] as const) {
            const exact = sorted[Math.ceil(q * sorted.length) - 1]!;
            const [low, high] = latencyBucketRange(latencyBucketIndex(exact));
            expect(estimate).not.toBeNull();
            expect(Math.abs(estimate! - exact)).toBeLessThanOrEqual(high - low);
          }
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });

  it('has log-spaced bucket bounds from 1 ms to 10 minutes', () => {
    expect(LATENCY_BUCKET_BOUNDS_MS[0]).toBe(1);
    expect(LATENCY_BUCKET_BOUNDS_MS.at(-1)).toBe(600_000);
    for (let i = 1; i < LATENCY_BUCKET_BOUNDS_MS.length; i++) {
      const ratio = LATENCY_BUCKET_BOUNDS_MS[i]! / LATENCY_BUCKET_BOUNDS_MS[i - 1]!;
      expect(ratio).toBeGreaterThan(1);
      expect(ratio).toBeLessThan(1.4);
    }
  });

  it.each([
    ['a client that left before an answer', { status: 0 }],
    ['a 4xx', { status: 429 }],
    ['a 5xx', { status: 502 }],
    ['a 200 with an error code', { status: 200, errorCode: 'upstream_stream_truncated' }],
  ])('counts %s as an error', (_label, overrides) => {
    const { tracker } = manualTracker();
    tracker.record(makeRecord());
    tracker.record(makeRecord(overrides));
    expect(tracker.stats({ window: 'minute' })).toMatchObject({ count: 2, errors: 1, errorRate: 0.5 });
  });

  it('sums tokens and spend per model and over all models', () => {
    const { tracker } = manualTracker();
    tracker.record(makeRecord({ model: 'a', promptTokens: 3, completionTokens: 4, costUsd: 0.5 }));
    tracker.record(makeRecord({ model: 'b', promptTokens: 10, completionTokens: 20, costUsd: 0.25 }));
    expect(tracker.stats({ model: 'a' })).toMatchObject({ count: 1, totalTokens: 7, spendUsd: 0.5 });
    expect(tracker.stats()).toMatchObject({
      model: '*',
      window: '1h',
      count: 2,
      promptTokens: 13,
      completionTokens: 24,
      spendUsd: 0.75,
    });
    expect(tracker.stats({ model: 'never-seen' })).toMatchObject({ count: 0, avgLatencyMs: null });
    expect(tracker.snapshot('minute').models.map((s) => s.model)).toEqual(['a', 'b']);
  });

  it('tracks at most maxModels models by name and counts the rest under other', () => {
    const { tracker } = manualTracker({ maxModels: 10 });
    for (let i = 0; i < 1000; i++) tracker.record(makeRecord({ model: `model-${i}` }));
    expect(tracker.models()).toHaveLength(10);
    expect(tracker.stats({ model: 'other' }).count).toBe(990);
    expect(tracker.stats({ model: 'model-3' }).count).toBe(1);
    expect(tracker.stats({ model: 'model-500' }).count).toBe(0);
    expect(tracker.stats().count).toBe(1000);
  });

  it('gives a model its own rollup only from its first successful request', () => {
    const { tracker } = manualTracker();
    for (let i = 0; i < 500; i++) tracker.record(makeRecord({ model: `junk-${i}`, status: 401 }));
    tracker.record(makeRecord({ model: 'gpt-4o', status: 200 }));
    tracker.record(makeRecord({ model: 'gpt-4o', status: 500 }));
    expect(tracker.models()).toEqual(['gpt-4o']);
    expect(tracker.stats({ model: 'gpt-4o' })).toMatchObject({ count: 2, errors: 1 });
    expect(tracker.stats({ model: 'other' }).count).toBe(500);
  });

  it('keeps a client-chosen model named * or other out of the all-models rollup', () => {
    const { tracker } = manualTracker();
    tracker.record(makeRecord({ model: '*' }));
    tracker.record(makeRecord({ model: 'real' }));
    expect(tracker.stats({ model: '*' }).count).toBe(2);
    expect(tracker.stats({ model: 'other' }).count).toBe(1);
    expect(tracker.models()).toEqual(['real']);
  });

  it.each([
    [{ model: 'x', window: '2h' }, /window must be one of/],
    [{ model: 42 }, /model must be a string/],
  ])('refuses the stats query %j', (query, message) => {
    const { tracker } = manualTracker();
    expect(() => tracker.stats(query as never)).toThrow(message);
  });
});

describe('RequestTracker sink and listeners', () => {
  it('writes each record to the sink and to subscribers until they unsubscribe', () => {
    const written: RequestRecord[] = [];
    const { tracker } = manualTracker({ sink: { write: (record) => written.push(record) } });
    const heard: string[] = [];
    const unsubscribe = tracker.subscribe((record) => heard.push(record.id));
    tracker.record(makeRecord({ id: 'one' }));
    unsubscribe();
    tracker.record(makeRecord({ id: 'two' }));
    expect(written.map((r) => r.id)).toEqual(['one', 'two']);
    expect(heard).toEqual(['one']);
    expect(Object.isFrozen(written[0])).toBe(true);
  });

  it('carries on, and logs, when the sink or a listener throws', () => {
    const error = jest.fn<Logger['error']>();
    const tracker = new RequestTracker({
      logger: { error },
      sink: {
        write: () => {
          throw new Error('disk full');
        },
      },
    });
    const heard = jest.fn();
    tracker.subscribe(() => {
      throw new Error('bad listener');
    });
    tracker.subscribe(heard);
    tracker.record(makeRecord());
    expect(tracker.size).toBe(1);
    expect(heard).toHaveBeenCalledTimes(1);
    expect(error.mock.calls.map(([message]) => message)).toEqual([
      'tracker sink failed',
      'tracker listener failed',
    ]);
  });

  it('logs a failing sink without the credential its error quotes', () => {
    const logged: string[] = [];
    const tracker = new RequestTracker({
      sink: {
        write() {
          throw new Error('export failed: Authorization: Bearer sk-exporter-secret-0123456789');
        },
      },
      logger: { error: (message, fields) => logged.push(`${message} ${JSON.stringify(fields)}`) },
    });
    tracker.record(makeRecord());
    expect(logged).toHaveLength(1);
    expect(logged[0]).not.toContain('sk-exporter-secret');
  });
});

describe('RequestTracker options', () => {
  it.each([
    [{ capacity: 0 }, /capacity must be a positive integer/],
    [{ capacity: 1.5 }, /capacity must be a positive integer/],
    [{ maxModels: -1 }, /maxModels must be a non-negative integer/],
    [{ clock: 5 }, /clock must be a function/],
    [{ sink: {} }, /sink must be an object with a write\(record\) method/],
    [{ logger: {} }, /logger must be an object with an error/],
  ])('throws a TypeError for %j', (options, message) => {
    expect(() => new RequestTracker(options as never)).toThrow(TypeError);
    expect(() => new RequestTracker(options as never)).toThrow(message);
  });

  it('refuses a negative recent count', () => {
    expect(() => new RequestTracker().recent(-1)).toThrow(TypeError);
  });
});

describe.each(expressVersions)('RequestTracker middleware on %s', (_label, express) => {
  function appWith(tracker: RequestTracker) {
    const app = express();
    app.use(tracker.middleware());
    // Mounted twice (preset and host, say): still one record per request.
    app.use(tracker.middleware());
    app.get('/ok', (_req, res) => {
      const ctx = getContext(res)!;
      ctx.model = 'gpt-4o-mini';
      ctx.usage = { promptTokens: 12, completionTokens: 3, totalTokens: 15 };
      // Key accounting prices the request in its own close listener, registered after the
      // tracker's, holding the settled event until it has.
      const releaseCost = ctx.hold();
      res.once('close', () => {
        ctx.costUsd = 0.25;
        releaseCost();
      });
      res.json({ ok: true });
    });
    app.get('/boom', () => {
      throw new Error('handler crashed');
    });
    app.get('/hang', (_req, _res) => {
      hangArrived();
    });
    app.use(recovery({ logger: silentLogger }));
    return app;
  }
  let hangArrived: () => void = () => undefined;

  it('records a successful request once, with the cost settled after it closed', async () => {
    const tracker = new RequestTracker({ logger: silentLogger });
    await request(appWith(tracker)).get('/ok?secret=abc').expect(200);
    await tracker.whenRecorded();
    expect(tracker.size).toBe(1);
    expect(tracker.recent(1)[0]).toMatchObject({
      route: '/ok',
      status: 200,
      model: 'gpt-4o-mini',
      promptTokens: 12,
      completionTokens: 3,
      costUsd: 0.25,
    });
    expect(tracker.stats({ model: 'gpt-4o-mini' }).spendUsd).toBe(0.25);
  });

  it('records a failed request once, with its status and error code', async () => {
    const tracker = new RequestTracker({ logger: silentLogger });
    await request(appWith(tracker)).get('/boom').expect(500);
    await tracker.whenRecorded();
    expect(tracker.size).toBe(1);
    expect(tracker.recent(1)[0]).toMatchObject({ route: '/boom', status: 500, errorCode: 'internal_error' });
    expect(tracker.stats().errors).toBe(1);
  });

  it('records a request once when the client leaves before an answer', async () => {
    const tracker = new RequestTracker({ logger: silentLogger });
    const { port, close } = await listen(appWith(tracker));
    try {
      const arrived = new Promise<void>((resolve) => {
        hangArrived = resolve;
      });
      const req = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false });
      req.on('error', () => undefined);
      await arrived;
      expect(tracker.size).toBe(0);
      req.destroy();
      await tracker.whenRecorded();
      expect(tracker.size).toBe(1);
      expect(tracker.recent(1)[0]).toMatchObject({ route: '/hang', status: 0 });
      expect(tracker.stats().errors).toBe(1);
    } finally {
      await close();
    }
  });
});

describe('RequestTracker and metrics behind the relay', () => {
  // Fresh mocks per test: a hedge or a stream one test leaves running cannot reach the next.
  let a: MockUpstream;
  let b: MockUpstream;
  const cleanups: (() => Promise<unknown> | void)[] = [];
  beforeEach(async () => {
    [a, b] = await Promise.all([createMockUpstream(), createMockUpstream()]);
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** The relay behind metrics and the tracker, on its own relay that the test closes. */
  function observed(options: StreamRelayOptions) {
    const tracker = new RequestTracker({ logger: silentLogger });
    const metrics = createMetrics();
    const relay = streamRelay(options);
    cleanups.push(
      () => relay.close(),
      () => metrics.close(),
    );
    const app = express5();
    app.use(metrics.middleware());
    app.use(tracker.middleware());
    app.post('/v1/chat/completions', bodyLimit(), relay);
    return { app, tracker, metrics };
  }

  const codesOf = async (metrics: LlmuxMetrics) =>
    (await metrics.registry.getSingleMetric('llmux_requests_total')!.get()).values.map((v) => v.labels.code);

  it('records a request that succeeded on a retry as a success, not as an error', async () => {
    const { app, tracker, metrics } = observed({
      upstream: upstreamPool({ upstreams: [{ url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' }] }),
      retry: retry({ attempts: 2, baseDelayMs: 0, maxDelayMs: 0 }),
    });
    a.enqueue({ status: 503 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    expect(tracker.recent(1)[0]!.errorCode).toBeUndefined();
    expect(tracker.stats().errors).toBe(0);
    expect(await codesOf(metrics)).toEqual(['none']);
  });

  it('records a hedged request whose loser failed as a success when the winner answered', async () => {
    const { app, tracker, metrics } = observed({
      upstream: upstreamPool({
        upstreams: [
          { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
          { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
        ],
      }),
      hedge: { afterMs: 50 },
    });
    // a (picked first) resets at 150 ms; the hedge on b answers at 400 ms and wins.
    a.enqueue({ delayBeforeHeadersMs: 150, resetBeforeHeaders: true });
    b.enqueue({ delayBeforeHeadersMs: 400 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    expect(tracker.recent(1)[0]!.errorCode).toBeUndefined();
  });

  it('records a client that left mid-stream as client_closed in the tracker, as the metrics do', async () => {
    const { app, tracker, metrics } = observed({
      upstream: upstreamPool({ upstreams: [{ url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' }] }),
    });
    a.setBehaviour({ chunks: 100, chunkDelayMs: 20 });
    const server = await listen(app);
    cleanups.push(() => server.close());
    await postAndLeave(server.port, chat({ stream: true }));
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    expect(await codesOf(metrics)).toEqual(['client_closed']);
    expect(tracker.recent(1)[0]!.errorCode).toBe('client_closed');
    expect(tracker.stats().errors).toBe(1);
  });
});
