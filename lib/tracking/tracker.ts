// The request tracker: the last N finished requests in a preallocated ring, per-model rollups by
// minute, hour and UTC day, and the listeners behind the live feed. Fixed memory, no timers.
import { OptionReader } from '../options.js';
import { redactSecrets } from '../redact.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext } from '../context.js';
import { stderrLogger, type Logger } from '../log.js';
import { latencyBucketIndex, latencyPercentile } from './histogram.js';
import { recordOf, type RequestRecord } from './record.js';
import { RingBuffer } from './ring-buffer.js';
import { emptyTotals, HISTOGRAM_OFFSET, ROLLUP_FIELD, RollupSeries } from './rollups.js';
import {
  GRANULARITY_MS,
  GRANULARITY_SLOTS,
  isStatsWindow,
  STATS_WINDOWS,
  windowSpec,
  type RollupGranularity,
  type StatsWindow,
} from './windows.js';

type Next = (err?: unknown) => void;

/** Where each finished request also goes; a `UsageSink` fits. `write` must not block. */
export interface RecordSink {
  write(record: RequestRecord): void;
}

/** Called with each finished request (frozen: read it, do not change it). */
export type RecordListener = (record: Readonly<RequestRecord>) => void;

/** Options of {@link RequestTracker}. */
export interface RequestTrackerOptions {
  /** Finished requests kept for {@link RequestTracker.recent}, preallocated. Default `1000`. */
  capacity?: number;
  /**
   * Models with rollups of their own. Past this bound, and for names longer than 256 characters,
   * requests count under `'other'`. Default `100`.
   */
  maxModels?: number;
  /** Wall-clock time in ms since the epoch; places requests in rollup buckets. Default `Date.now`. */
  clock?: () => number;
  /** Receives every record as it is recorded (for example a `UsageSink`). Default: none. */
  sink?: RecordSink;
  /** Told when the sink or a listener throws; the tracker carries on. Default: JSON lines on stderr. */
  logger?: Logger;
}

/** What to summarize in {@link RequestTracker.stats}. */
export interface StatsQuery {
  /** A model name, `'*'` for every model, or `'other'` for the overflow. Default `'*'`. */
  model?: string;
  /** The window; see {@link StatsWindow}. Default `'1h'`. */
  window?: StatsWindow;
}

/** Totals of one model (or all) over one window. Averages are weighted: total sum / total count. */
export interface TrackerStats {
  model: string;
  window: StatsWindow;
  /** Start of the window (start of its oldest bucket), ms since the epoch. */
  fromMs: number;
  /** The tracker's clock when asked, ms since the epoch. */
  toMs: number;
  /** Finished requests. */
  count: number;
  /** Requests that failed: status 0 (client left before an answer), status >= 400, or an error code. */
  errors: number;
  /** `errors / count`, `0` when there were none. */
  errorRate: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  spendUsd: number;
  /** Mean latency, `null` without requests. */
  avgLatencyMs: number | null;
  /** Mean time to first byte over the requests that sent one, `null` without such requests. */
  avgTtfbMs: number | null;
  /** Latency percentiles from the fixed histogram: within one bucket's width (~33%) of exact. */
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
  p99LatencyMs: number | null;
}

/** Every model's stats over one window, as the live feed sends them. */
export interface TrackerSnapshot {
  /** The tracker's clock, ms since the epoch. */
  timeMs: number;
  window: StatsWindow;
  /** All models together. */
  all: TrackerStats;
  /** Each tracked model (and `'other'`) with requests in the window. */
  models: TrackerStats[];
}

/** The minute, hour and day series of one model. */
interface ModelRollups {
  minute: RollupSeries;
  hour: RollupSeries;
  day: RollupSeries;
}

const DEFAULT_CAPACITY = 1000;
const MAX_CAPACITY = 10_000_000;
const DEFAULT_MAX_MODELS = 100;
const MAX_MAX_MODELS = 10_000;
const MAX_MODEL_NAME_LENGTH = 256;
const MAX_ROUTE_LENGTH = 256;
const DEFAULT_WINDOW: StatsWindow = '1h';
/** The all-models rollup. */
const ALL_MODELS = '*';
/** Models past `maxModels`, reserved names, and names not yet seen succeeding. */
const OTHER_MODELS = 'other';
/** Requests that named no model. */
const NO_MODEL = 'unknown';

/**
 * Keeps the last `capacity` finished requests and per-model rollups (plus an all-models `'*'`
 * rollup and an `'other'` overflow): per UTC minute (last 60), hour (last 48) and day (last 30),
 * each bucket holding count, errors, tokens, spend, latency and time to first byte as sum and
 * count, and a fixed latency histogram. Every average is total sum / total count over the
 * window's buckets, never an average of averages; p50/p95/p99 come from the summed histogram.
 *
 * Memory is fixed: the ring is preallocated, buckets are reused in rotation, and at most
 * `maxModels` models get rollups (about 64 KiB each). A model name gets its own rollup on its
 * first successful request, so unauthenticated or invalid requests naming random models cannot
 * use up the slots; until then, and past the bound, its requests count under `'other'`.
 *
 * Requests are placed in buckets by the tracker's `clock` when they are recorded (when they
 * finished). The tracker starts no timer and holds no socket: nothing to close.
 *
 * @example
 * const tracker = new RequestTracker({ capacity: 5000, sink: new JsonlFileSink({ path: 'usage.jsonl' }) });
 * app.use(tracker.middleware());
 * app.use('/llmux', trackerRouter(tracker));
 * tracker.stats({ model: 'gpt-4o-mini', window: '15m' }).p95LatencyMs;
 */
export class RequestTracker {
  private readonly ring: RingBuffer<Readonly<RequestRecord>>;
  private readonly maxModels: number;
  private readonly clock: () => number;
  private readonly sink: RecordSink | undefined;
  private readonly logger: Logger;
  private readonly all: ModelRollups = newModelRollups();
  private readonly other: ModelRollups = newModelRollups();
  private readonly byModel = new Map<string, ModelRollups>();
  private readonly listeners = new Set<RecordListener>();
  /** Responses this tracker's middleware already watches, so mounting it twice records once. */
  private readonly watched = new WeakSet<ServerResponse>();
  /** Requests the middleware saw and has not recorded yet, and who waits for none to be. */
  private unrecorded = 0;
  private idleWaiters: (() => void)[] = [];
  /** Responses left out of the records (the tracker's own dashboard requests). */
  private readonly excluded = new WeakSet<ServerResponse>();

  constructor(options: RequestTrackerOptions = {}) {
    const read = new OptionReader('RequestTracker');
    read.options(options);
    const capacity = read.positiveInteger('capacity', options.capacity, DEFAULT_CAPACITY, MAX_CAPACITY);
    const maxModels = read.nonNegativeInteger(
      'maxModels',
      options.maxModels,
      DEFAULT_MAX_MODELS,
      MAX_MAX_MODELS,
    );
    const clock = read.function('clock', options.clock, Date.now);
    const sink =
      options.sink === undefined
        ? undefined
        : read.implementing<RecordSink>(
            'sink',
            options.sink,
            ['write'],
            'an object with a write(record) method',
          );
    const logger = read.implementing<Logger>(
      'logger',
      options.logger ?? stderrLogger,
      ['error'],
      'an object with an error(message, fields) method',
    );
    this.ring = new RingBuffer(capacity);
    this.maxModels = maxModels;
    this.clock = clock;
    this.sink = sink;
    this.logger = logger;
  }

  /** The most records kept. */
  get capacity(): number {
    return this.ring.capacity;
  }

  /** Records kept now: at most {@link capacity}. */
  get size(): number {
    return this.ring.size;
  }

  /**
   * Records one finished request: into the ring, the rollups, the sink, then the listeners. The
   * tracker keeps a frozen copy; the sink and listeners receive that copy.
   *
   * @example
   * tracker.record(recordOf(ctx, res, '/v1/chat/completions', performance.now()));
   */
  record(record: RequestRecord): void {
    const stored = Object.freeze(copyRecord(record));
    this.ring.push(stored);
    const nowMs = this.clock();
    const isError = stored.status === 0 || stored.status >= 400 || stored.errorCode !== undefined;
    const latencyBucket = latencyBucketIndex(stored.latencyMs);
    addTo(this.all, nowMs, stored, isError, latencyBucket);
    // Rolled up as the model that served it: its latency and cost are that model's.
    addTo(
      this.rollupsFor(stored.servedModel ?? stored.model, isError),
      nowMs,
      stored,
      isError,
      latencyBucket,
    );
    if (this.sink !== undefined) {
      try {
        this.sink.write(stored);
      } catch (err) {
        this.logger.error('tracker sink failed', { requestId: stored.id, error: redactSecrets(String(err)) });
      }
    }
    for (const listener of this.listeners) {
      try {
        listener(stored);
      } catch (err) {
        this.logger.error('tracker listener failed', {
          requestId: stored.id,
          error: redactSecrets(String(err)),
        });
      }
    }
  }

  /**
   * Up to `n` of the most recent records, newest first, as copies.
   *
   * @example
   * tracker.recent(20).map((r) => `${r.status} ${r.model} ${r.latencyMs}ms`);
   */
  recent(n: number = this.capacity): RequestRecord[] {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new TypeError(`RequestTracker.recent: n must be a non-negative integer, got ${String(n)}`);
    }
    return this.ring.newest(n, copyRecord);
  }

  /** Names of the models with rollups of their own (not `'*'` or `'other'`). */
  models(): string[] {
    return [...this.byModel.keys()];
  }

  /**
   * Totals of `model` over `window`, by the tracker's clock. A model without rollups (never
   * seen, or counted under `'other'`) gives zeros.
   *
   * @throws TypeError when `model` is not a string or `window` is not a {@link StatsWindow}
   * @example
   * const { avgLatencyMs, p99LatencyMs, errorRate } = tracker.stats({ model: 'gpt-4o', window: '24h' });
   */
  stats(query: StatsQuery = {}): TrackerStats {
    const { model = ALL_MODELS, window = DEFAULT_WINDOW } = query;
    if (typeof model !== 'string') {
      throw new TypeError(`RequestTracker.stats: model must be a string, got ${typeof model}`);
    }
    if (!isStatsWindow(window)) {
      throw new TypeError(
        `RequestTracker.stats: window must be one of ${STATS_WINDOWS.join(', ')}, got ${String(window)}`,
      );
    }
    const rollups =
      model === ALL_MODELS ? this.all : model === OTHER_MODELS ? this.other : this.byModel.get(model);
    return statsOf(rollups, model, window, this.clock());
  }

  /**
   * Stats of every model with requests in `window`, and of all together, at one instant.
   *
   * @example
   * tracker.snapshot('5m').models.map((s) => [s.model, s.count]);
   */
  snapshot(window: StatsWindow = '15m'): TrackerSnapshot {
    if (!isStatsWindow(window)) {
      throw new TypeError(
        `RequestTracker.snapshot: window must be one of ${STATS_WINDOWS.join(', ')}, got ${String(window)}`,
      );
    }
    const nowMs = this.clock();
    const models: TrackerStats[] = [];
    for (const [name, rollups] of this.byModel) {
      const stats = statsOf(rollups, name, window, nowMs);
      if (stats.count > 0) models.push(stats);
    }
    const other = statsOf(this.other, OTHER_MODELS, window, nowMs);
    if (other.count > 0) models.push(other);
    return { timeMs: nowMs, window, all: statsOf(this.all, ALL_MODELS, window, nowMs), models };
  }

  /**
   * Calls `listener` with every record from now on; returns the function that stops it.
   *
   * @example
   * const unsubscribe = tracker.subscribe((record) => console.log(record.id, record.status));
   * unsubscribe();
   */
  subscribe(listener: RecordListener): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError(`RequestTracker.subscribe: listener must be a function, got ${typeof listener}`);
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * A middleware that records each request exactly once, when it settles: its response closed
   * (answered, failed or abandoned by the client), its cost priced and its last upstream attempt
   * logged (see `RequestContext.onSettled`). The route is the path without its query string.
   * Mount it early, before the routes it should see.
   *
   * @example
   * app.use(tracker.middleware());
   */
  middleware() {
    return (req: IncomingMessage, res: ServerResponse, next: Next): void => {
      if (!this.watched.has(res)) {
        this.watched.add(res);
        const ctx = ensureContext(req, res);
        const route = routeOf(req);
        this.unrecorded++;
        ctx.onSettled(() => {
          try {
            if (!this.excluded.has(res)) this.record(recordOf(ctx, res, route, performance.now()));
          } finally {
            this.recorded();
          }
        });
      }
      next();
    };
  }

  /**
   * Resolves once every request the middleware saw so far is recorded (has settled). For tests
   * and a last read before shutdown: no polling.
   */
  whenRecorded(): Promise<void> {
    if (this.unrecorded === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private recorded(): void {
    if (--this.unrecorded > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Leaves `res` out of what {@link middleware} records. `trackerRouter` calls it for its own
   * requests, so polling dashboards and long-lived live feeds do not count in the stats.
   *
   * @example
   * router.get('/dashboard-data', (req, res) => { tracker.exclude(res); res.json(tracker.stats()); });
   */
  exclude(res: ServerResponse): void {
    this.excluded.add(res);
  }

  private rollupsFor(model: string | undefined, isError: boolean): ModelRollups {
    const name = model ?? NO_MODEL;
    const known = this.byModel.get(name);
    if (known !== undefined) return known;
    if (
      isError ||
      this.byModel.size >= this.maxModels ||
      name === ALL_MODELS ||
      name === OTHER_MODELS ||
      name.length > MAX_MODEL_NAME_LENGTH
    ) {
      return this.other;
    }
    const created = newModelRollups();
    this.byModel.set(name, created);
    return created;
  }
}

function routeOf(req: IncomingMessage): string {
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  return path.length > MAX_ROUTE_LENGTH ? path.slice(0, MAX_ROUTE_LENGTH) : path;
}

/** A field-by-field copy: several times faster than a spread, and it keeps one object shape. */
function copyRecord(record: Readonly<RequestRecord>): RequestRecord {
  return {
    id: record.id,
    timeMs: record.timeMs,
    route: record.route,
    model: record.model,
    servedModel: record.servedModel,
    keyId: record.keyId,
    teamId: record.teamId,
    userId: record.userId,
    status: record.status,
    errorCode: record.errorCode,
    stream: record.stream,
    latencyMs: record.latencyMs,
    ttfbMs: record.ttfbMs,
    promptTokens: record.promptTokens,
    completionTokens: record.completionTokens,
    cachedTokens: record.cachedTokens,
    cacheWriteTokens: record.cacheWriteTokens,
    reasoningTokens: record.reasoningTokens,
    audioPromptTokens: record.audioPromptTokens,
    audioCompletionTokens: record.audioCompletionTokens,
    costUsd: record.costUsd,
    upstream: record.upstream,
    upstreamRequestId: record.upstreamRequestId,
    attempts: record.attempts,
  };
}

function newModelRollups(): ModelRollups {
  return { minute: series('minute'), hour: series('hour'), day: series('day') };
}

function series(granularity: RollupGranularity): RollupSeries {
  return new RollupSeries(GRANULARITY_SLOTS[granularity], GRANULARITY_MS[granularity]);
}

function addTo(
  rollups: ModelRollups,
  nowMs: number,
  record: RequestRecord,
  isError: boolean,
  latencyBucket: number,
): void {
  rollups.minute.add(nowMs, record, isError, latencyBucket);
  rollups.hour.add(nowMs, record, isError, latencyBucket);
  rollups.day.add(nowMs, record, isError, latencyBucket);
}

function statsOf(
  rollups: ModelRollups | undefined,
  model: string,
  window: StatsWindow,
  nowMs: number,
): TrackerStats {
  const { granularity, buckets } = windowSpec(window);
  const totals = emptyTotals();
  const fromMs =
    rollups === undefined
      ? (Math.floor(nowMs / GRANULARITY_MS[granularity]) - buckets + 1) * GRANULARITY_MS[granularity]
      : rollups[granularity].sumInto(totals, nowMs, buckets);
  const count = totals[ROLLUP_FIELD.count]!;
  const errors = totals[ROLLUP_FIELD.errors]!;
  const promptTokens = totals[ROLLUP_FIELD.promptTokens]!;
  const completionTokens = totals[ROLLUP_FIELD.completionTokens]!;
  const latencyCount = totals[ROLLUP_FIELD.latencyCount]!;
  const ttfbCount = totals[ROLLUP_FIELD.ttfbCount]!;
  return {
    model,
    window,
    fromMs,
    toMs: nowMs,
    count,
    errors,
    errorRate: count === 0 ? 0 : errors / count,
    promptTokens,
    completionTokens,
    totalTokens: promptTokens + completionTokens,
    spendUsd: totals[ROLLUP_FIELD.spendUsd]!,
    avgLatencyMs: latencyCount === 0 ? null : totals[ROLLUP_FIELD.latencySumMs]! / latencyCount,
    avgTtfbMs: ttfbCount === 0 ? null : totals[ROLLUP_FIELD.ttfbSumMs]! / ttfbCount,
    p50LatencyMs: latencyPercentile(totals, HISTOGRAM_OFFSET, 0.5),
    p95LatencyMs: latencyPercentile(totals, HISTOGRAM_OFFSET, 0.95),
    p99LatencyMs: latencyPercentile(totals, HISTOGRAM_OFFSET, 0.99),
  };
}
