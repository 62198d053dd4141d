// The memory soak: 1,000,000 requests through S4 (the full llmux preset) at a fixed rate, the S4
// server's RSS and heap sampled every second, GC forced at the start (after a warm-up) and at the end.
// The slopes in MiB per 100,000 requests must be near zero (< 1 MiB) and the tracker's size exactly its
// capacity. The mock upstream and S4 run in their own children, pinned with taskset when it is there.
// Run: npm run bench:soak   (about 11 min on a quiet 2-core machine; writes bench/results/soak.json and
// bench/results/soak.svg). Knobs, defaults below: SOAK_REQUESTS, SOAK_RATE, SOAK_CONNECTIONS, SOAK_WARMUP,
// SOAK_SSE_EVERY, SOAK_TRACKER_CAPACITY, SOAK_PIN=0; e.g. `SOAK_REQUESTS=50000 npm run bench:soak`.
// SOAK_HEAP_SNAPSHOTS=1 also writes heap snapshots of the server after the start and end GCs (to the OS
// temp dir) for a comparison; writing one costs the server tens of MiB of RSS that it keeps.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { pinProcesses, ServerProcess } from './relay-children.js';
import { armWatchdog, runMain } from './run.js';
import { BENCH_KEY, SSE_CHUNKS } from './relay-config.js';
import type { SoakRequest, SoakSample, SoakSnapshotReply } from './soak-server.js';
import { svgLineChart } from './svg-plot.js';

function envInt(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`soak: ${name} must be an integer >= ${min}, got ${String(raw)}`);
  }
  return value;
}

/** Measured requests, after the warm-up. */
const REQUESTS = envInt('SOAK_REQUESTS', 1_000_000, 1);
/**
 * The fixed offered rate, req/s. S4 with this mix costs its core about 0.35–0.5 ms of CPU per request
 * (it saturates near 2,200 req/s in npm run bench), so 1,500 keeps it about 60–75 % busy and the
 * schedule holds: 1,000,000 requests take about 11 minutes. The rate matters to the per-second heap:
 * the garbage waiting for the next GC grows with it, so a rate that changes mid-run tilts the slope.
 */
const RATE = envInt('SOAK_RATE', 1_500, 1);
/** Connections of the load generator's pool (and its workers). */
const CONNECTIONS = envInt('SOAK_CONNECTIONS', 32, 1);
/** Requests before the start GC, at the same rate: JIT, pools and the tracker's ring fill up. */
const WARMUP = envInt('SOAK_WARMUP', 20_000, 0);
/** One request in SSE_EVERY is streamed (`stream: true`), the others are plain JSON. */
const SSE_EVERY = envInt('SOAK_SSE_EVERY', 10, 1);
/** The tracker's capacity (RequestTracker's default). */
const TRACKER_CAPACITY = envInt('SOAK_TRACKER_CAPACITY', 1_000, 1);
const HEAP_SNAPSHOTS = process.env.SOAK_HEAP_SNAPSHOTS === '1';
/** `SOAK_PIN=0` leaves the processes unpinned (default: pinned with taskset when it is there). */
const PIN = process.env.SOAK_PIN !== '0';
const SAMPLE_INTERVAL_MS = 1_000;
/** A request this late moves the schedule on rather than being caught up with a burst. */
const MAX_LAG_MS = 1_000;
/** Quiet time before each forced GC, so timers and sockets of the last requests settle first. */
const SETTLE_MS = 2_000;
/** A heap snapshot of the server can take seconds to write. */
const SNAPSHOT_REPLY_MS = 120_000;
/** Slopes and the forced-GC delta must stay under this, in MiB per 100,000 requests. */
const TARGET_MIB_PER_100K = 1;
/** The run stops by itself even when a busy machine holds only a quarter of the rate. */
const WATCHDOG_MS = (((REQUESTS + WARMUP) / RATE) * 4 + 120) * 1_000;

const MIB = 1_048_576;
const PATH = '/v1/chat/completions';
const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${BENCH_KEY}` };
const MODELS = ['gpt-4o-mini', 'gpt-4o'];
const messages = [
  { role: 'system', content: 'You are a terse assistant used by a relay soak test.' },
  { role: 'user', content: 'Say hello in a few words, then count from one to ten, and say goodbye.' },
];
const BODIES = MODELS.map((model) => ({
  json: JSON.stringify({ model, max_tokens: 64, messages }),
  sse: JSON.stringify({ model, max_tokens: 64, stream: true, messages }),
}));

/** The knobs of this run, as written to soak.json. */
const SETTINGS = {
  requests: REQUESTS,
  rate: RATE,
  connections: CONNECTIONS,
  warmUpRequests: WARMUP,
  sseEvery: SSE_EVERY,
  sseChunks: SSE_CHUNKS,
  models: MODELS,
  trackerCapacity: TRACKER_CAPACITY,
  sampleIntervalMs: SAMPLE_INTERVAL_MS,
  maxLagMs: MAX_LAG_MS,
  settleBeforeForcedGcMs: SETTLE_MS,
  targetMiBPer100k: TARGET_MIB_PER_100K,
};

// ---------------------------------------------------------------- child processes

// ---------------------------------------------------------------- load

interface LoadStats {
  /** Measured requests finished (any outcome). */
  completed: number;
  failures: number;
  failureExamples: string[];
  /** Per request: ms behind its due time when sent. */
  lateMs: Float64Array;
  /** Per request: ms from send to the last byte of the body. */
  latencyMs: Float64Array;
}

function newStats(count: number): LoadStats {
  return {
    completed: 0,
    failures: 0,
    failureExamples: [],
    lateMs: new Float64Array(count),
    latencyMs: new Float64Array(count),
  };
}

/** One request, body read to the end; throws unless it is a 200 (and, streamed, a complete stream). */
async function send(pool: Pool, index: number): Promise<void> {
  const stream = index % SSE_EVERY === SSE_EVERY - 1;
  const bodies = BODIES[index % BODIES.length]!;
  const res = await pool.request({
    method: 'POST',
    path: PATH,
    headers: HEADERS,
    body: stream ? bodies.sse : bodies.json,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${text.slice(0, 200)}`);
  if (stream && !text.includes('data: [DONE]')) throw new Error('SSE stream without data: [DONE]');
}

function recordFailure(stats: LoadStats, err: unknown): void {
  stats.failures++;
  if (stats.failureExamples.length < 5) stats.failureExamples.push(String((err as Error)?.message ?? err));
}

/**
 * The fixed-rate schedule: request i is due at start + slip + i / RATE. A request that goes out more
 * than MAX_LAG_MS late moves the schedule on (adds to `slip`) instead of leaving a backlog: a busy
 * machine then lowers the rate for a while, but never makes it burst above RATE to catch up.
 */
class Schedule {
  readonly start = performance.now();
  slipMs = 0;
  reanchors = 0;
  private readonly intervalMs = 1_000 / RATE;

  dueOf(index: number): number {
    return this.start + this.slipMs + index * this.intervalMs;
  }

  /** Waits until `index` is due; returns how late it goes out, in ms. */
  async waitFor(index: number): Promise<number> {
    for (
      let wait = this.dueOf(index) - performance.now();
      wait > 0;
      wait = this.dueOf(index) - performance.now()
    ) {
      await sleep(wait);
    }
    const lateMs = performance.now() - this.dueOf(index);
    if (lateMs > MAX_LAG_MS) {
      this.slipMs += lateMs;
      this.reanchors++;
    }
    return lateMs;
  }
}

/**
 * `count` requests on a {@link Schedule}: each worker takes the next index, waits until it is due,
 * sends it and records how late it went out. Resolves with the schedule once all are done.
 */
async function runSchedule(pool: Pool, count: number, stats: LoadStats): Promise<Schedule> {
  const schedule = new Schedule();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      stats.lateMs[i] = await schedule.waitFor(i);
      const sent = performance.now();
      await send(pool, i).catch((err: unknown) => recordFailure(stats, err));
      stats.latencyMs[i] = performance.now() - sent;
      stats.completed++;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  return schedule;
}

// ---------------------------------------------------------------- sampling

interface MemoryPoint {
  /** Seconds since the start GC. */
  seconds: number;
  /** Measured requests completed when the sample was taken. */
  requests: number;
  rssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  trackerSize: number;
  /** CPU time of the server so far, ms. */
  cpuMs: number;
  /** Heap used right after the server's latest major GC (see SoakSample.heapAfterMajorGc). */
  heapAfterMajorGcMiB: number;
  majorGcs: number;
}

function pointOf(sample: SoakSample, requests: number, seconds: number): MemoryPoint {
  const mib = (bytes: number) => Number((bytes / MIB).toFixed(3));
  return {
    seconds: Number(seconds.toFixed(2)),
    requests,
    rssMiB: mib(sample.rss),
    heapUsedMiB: mib(sample.heapUsed),
    heapTotalMiB: mib(sample.heapTotal),
    externalMiB: mib(sample.external),
    trackerSize: sample.trackerSize,
    cpuMs: Math.round(sample.cpuMs),
    heapAfterMajorGcMiB: mib(sample.heapAfterMajorGc),
    majorGcs: sample.majorGcs,
  };
}

/** Samples the server every second until stopped, printing a progress line every 30 samples. */
function startSampler(channel: ServerProcess, stats: LoadStats, points: MemoryPoint[]): () => Promise<void> {
  const start = performance.now();
  let inFlight: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    inFlight = channel.ask<SoakSample>({ type: 'sample' } satisfies SoakRequest).then((sample) => {
      const point = pointOf(sample, stats.completed, (performance.now() - start) / 1_000);
      points.push(point);
      if (points.length % 30 === 0) progress(point);
    });
  }, SAMPLE_INTERVAL_MS);
  return async () => {
    clearInterval(timer);
    await inFlight;
  };
}

function progress(point: MemoryPoint): void {
  process.stderr.write(
    `soak: ${point.seconds.toFixed(0)} s, ${point.requests} requests, RSS ${point.rssMiB.toFixed(1)} MiB, ` +
      `heap ${point.heapUsedMiB.toFixed(1)} MiB, tracker ${point.trackerSize}\n`,
  );
}

async function forcedGcPoint(
  channel: ServerProcess,
  requests: number,
  seconds: number,
): Promise<MemoryPoint> {
  return pointOf(await channel.ask<SoakSample>({ type: 'gc' } satisfies SoakRequest), requests, seconds);
}

async function heapSnapshot(channel: ServerProcess, name: string): Promise<string | undefined> {
  if (!HEAP_SNAPSHOTS) return undefined;
  const file = path.join(os.tmpdir(), `llmux-soak-${name}-${process.pid}.heapsnapshot`);
  const reply = await channel.ask<SoakSnapshotReply>(
    { type: 'snapshot', path: file } satisfies SoakRequest,
    SNAPSHOT_REPLY_MS,
  );
  process.stderr.write(`soak: heap snapshot ${reply.path}\n`);
  return reply.path;
}

// ---------------------------------------------------------------- analysis

/** Least-squares slope of y over x; NaN with fewer than two distinct x. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const meanX = xs.reduce((a, b) => a + b, 0) / n;
  const meanY = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - meanX) * (ys[i]! - meanY);
    sxx += (xs[i]! - meanX) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

function per100k(points: readonly MemoryPoint[], pick: (p: MemoryPoint) => number): number {
  return (
    slope(
      points.map((p) => p.requests),
      points.map(pick),
    ) * 100_000
  );
}

function percentile(values: Float64Array, p: number): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function round(value: number, digits = 3): number {
  return Number(value.toFixed(digits));
}

interface Slopes {
  heapUsedMiBPer100k: number;
  /** Of the heap after the latest major GC: what stays, without the garbage level that follows the rate. */
  heapAfterMajorGcMiBPer100k: number;
  rssMiBPer100k: number;
  heapUsedSecondHalfMiBPer100k: number;
  rssSecondHalfMiBPer100k: number;
  forcedGcHeapUsedDeltaMiBPer100k: number;
  forcedGcRssDeltaMiBPer100k: number;
}

function slopesOf(points: readonly MemoryPoint[], start: MemoryPoint, end: MemoryPoint): Slopes {
  const secondHalf = points.slice(Math.floor(points.length / 2));
  const delta = (pick: (p: MemoryPoint) => number) =>
    ((pick(end) - pick(start)) / Math.max(1, end.requests - start.requests)) * 100_000;
  return {
    heapUsedMiBPer100k: round(per100k(points, (p) => p.heapUsedMiB)),
    heapAfterMajorGcMiBPer100k: round(
      per100k(
        points.filter((p) => p.majorGcs > start.majorGcs),
        (p) => p.heapAfterMajorGcMiB,
      ),
    ),
    rssMiBPer100k: round(per100k(points, (p) => p.rssMiB)),
    heapUsedSecondHalfMiBPer100k: round(per100k(secondHalf, (p) => p.heapUsedMiB)),
    rssSecondHalfMiBPer100k: round(per100k(secondHalf, (p) => p.rssMiB)),
    forcedGcHeapUsedDeltaMiBPer100k: round(delta((p) => p.heapUsedMiB)),
    forcedGcRssDeltaMiBPer100k: round(delta((p) => p.rssMiB)),
  };
}

interface LoadFigures {
  durationS: number;
  achievedRate: number;
  /** How far the schedule was moved on because the machine could not keep up, in total. */
  scheduleSlipS: number;
  /** How many times it was moved on (a request went out more than MAX_LAG_MS late). */
  scheduleMovedOn: number;
  lateP50Ms: number;
  lateP99Ms: number;
  lateMaxMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  /** Server CPU time over the measured phase / its duration: how near S4's core is to saturation. */
  serverCpuPercent: number;
  /** The same for this process, the load generator (it shares its core with the mock when pinned). */
  loadGeneratorCpuPercent: number;
  /** Measured requests that were not a 200 (or failed outright). */
  failures: number;
  warmUpFailures: number;
  failureExamples: string[];
}

interface CpuTimes {
  serverMs: number;
  loadGeneratorMs: number;
}

function loadFiguresOf(
  stats: LoadStats,
  warm: LoadStats,
  schedule: Schedule,
  seconds: number,
  cpu: CpuTimes,
): LoadFigures {
  return {
    durationS: round(seconds, 1),
    achievedRate: round(REQUESTS / seconds, 1),
    scheduleSlipS: round(schedule.slipMs / 1_000, 1),
    scheduleMovedOn: schedule.reanchors,
    lateP50Ms: round(percentile(stats.lateMs, 50)),
    lateP99Ms: round(percentile(stats.lateMs, 99)),
    lateMaxMs: round(percentile(stats.lateMs, 100)),
    latencyP50Ms: round(percentile(stats.latencyMs, 50)),
    latencyP99Ms: round(percentile(stats.latencyMs, 99)),
    latencyMaxMs: round(percentile(stats.latencyMs, 100)),
    serverCpuPercent: round(cpu.serverMs / seconds / 10, 1),
    loadGeneratorCpuPercent: round(cpu.loadGeneratorMs / seconds / 10, 1),
    failures: stats.failures,
    warmUpFailures: warm.failures,
    failureExamples: [...warm.failureExamples, ...stats.failureExamples],
  };
}

interface Verdicts {
  heapSlopeUnder1MiBPer100k: boolean;
  rssSlopeUnder1MiBPer100k: boolean;
  forcedGcHeapDeltaUnder1MiBPer100k: boolean;
  trackerSizeIsCapacity: boolean;
  /** No failure in the warm-up or the measured requests. */
  noFailures: boolean;
}

function verdictsOf(slopes: Slopes, end: MemoryPoint, load: LoadFigures): Verdicts {
  const under = (v: number) => Math.abs(v) < TARGET_MIB_PER_100K;
  return {
    heapSlopeUnder1MiBPer100k: under(slopes.heapUsedMiBPer100k),
    rssSlopeUnder1MiBPer100k: under(slopes.rssMiBPer100k),
    forcedGcHeapDeltaUnder1MiBPer100k: under(slopes.forcedGcHeapUsedDeltaMiBPer100k),
    trackerSizeIsCapacity: end.trackerSize === TRACKER_CAPACITY,
    noFailures: load.failures === 0 && load.warmUpFailures === 0,
  };
}

// ---------------------------------------------------------------- output

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

function formatRequests(value: number): string {
  if (value === 0) return '0';
  if (Math.abs(value) >= 1_000_000) return `${Number((value / 1_000_000).toFixed(2))}M`;
  return `${Number((value / 1_000).toFixed(1))}k`;
}

function plot(points: readonly MemoryPoint[], start: MemoryPoint, end: MemoryPoint, slopes: Slopes): string {
  return svgLineChart({
    title: `llmux soak: memory of the S4 server over ${formatRequests(REQUESTS)} requests at ${RATE} req/s`,
    subtitle:
      `MiB per 100k requests (least squares): heap used ${slopes.heapUsedMiBPer100k}, after major GC ` +
      `${slopes.heapAfterMajorGcMiBPer100k}, RSS ${slopes.rssMiBPer100k}; heap after forced GC ` +
      `${start.heapUsedMiB} → ${end.heapUsedMiB} MiB`,
    xLabel: 'requests completed (after warm-up and the start GC)',
    yLabel: 'MiB (server process)',
    formatX: formatRequests,
    series: [
      { name: 'RSS', color: '#d62728', points: points.map((p) => [p.requests, p.rssMiB]) },
      {
        name: 'heap total',
        color: '#9467bd',
        dash: '6 4',
        points: points.map((p) => [p.requests, p.heapTotalMiB]),
      },
      { name: 'heap used', color: '#1f77b4', points: points.map((p) => [p.requests, p.heapUsedMiB]) },
      {
        name: 'heap after the latest major GC',
        color: '#ff7f0e',
        points: points
          .filter((p) => p.majorGcs > start.majorGcs)
          .map((p) => [p.requests, p.heapAfterMajorGcMiB]),
      },
      {
        name: 'heap used after forced GC (start, end)',
        color: '#2ca02c',
        style: 'points',
        points: [start, end].map((p) => [p.requests, p.heapUsedMiB]),
      },
    ],
  });
}

// ---------------------------------------------------------------- main

interface Setup {
  pool: Pool;
  channel: ServerProcess;
  pinning: { used: boolean; loadGenerator?: number; server?: number; mock?: number; reason?: string };
}

async function setUp(): Promise<Setup> {
  // Load generator and mock on core 0, the S4 server alone on core 1 (as in npm run bench).
  const pinned = PIN ? pinProcesses() : undefined;
  const use = pinned?.used === true;
  const mock = await ServerProcess.start('mock', ['mock'], use ? pinned.mockCore : undefined, { flags: [] });
  const server = await ServerProcess.start(
    'S4',
    [mock.url, String(TRACKER_CAPACITY)],
    use ? pinned.relayCore : undefined,
    { script: './soak-server.ts', flags: ['--expose-gc'] },
  );
  const pool = new Pool(server.url, { connections: CONNECTIONS, keepAliveTimeout: 60_000 });
  const pinning = use
    ? { used: true, loadGenerator: pinned.loadGeneratorCore, server: pinned.relayCore, mock: pinned.mockCore }
    : { used: false, reason: pinned?.note ?? 'SOAK_PIN=0' };
  return { pool, channel: server, pinning };
}

interface SoakRun {
  warm: LoadStats;
  stats: LoadStats;
  schedule: Schedule;
  seconds: number;
  loadGeneratorCpuMs: number;
  start: MemoryPoint;
  end: MemoryPoint;
  points: MemoryPoint[];
  snapshots: { start?: string; end?: string } | undefined;
}

/** Warm-up, start GC, the measured requests with a sample every second, end GC. */
async function runSoak({ pool, channel }: Setup): Promise<SoakRun> {
  const warm = newStats(WARMUP);
  await runSchedule(pool, WARMUP, warm);
  const start = await forcedGcPoint(channel, 0, 0);
  const snapshotStart = await heapSnapshot(channel, 'start');
  const stats = newStats(REQUESTS);
  const points: MemoryPoint[] = [];
  const stopSampler = startSampler(channel, stats, points);
  const cpuBefore = process.cpuUsage();
  const schedule = await runSchedule(pool, REQUESTS, stats);
  const seconds = (performance.now() - schedule.start) / 1_000;
  const cpu = process.cpuUsage(cpuBefore);
  await stopSampler();
  const end = await forcedGcPoint(channel, stats.completed, seconds);
  const snapshotEnd = await heapSnapshot(channel, 'end');
  await pool.close();
  return {
    warm,
    stats,
    schedule,
    seconds,
    loadGeneratorCpuMs: (cpu.user + cpu.system) / 1_000,
    start,
    end,
    points,
    snapshots: HEAP_SNAPSHOTS ? { start: snapshotStart, end: snapshotEnd } : undefined,
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const setup = await setUp();
  process.stderr.write(
    `soak: ${WARMUP} warm-up + ${REQUESTS} requests at ${RATE} req/s over ${CONNECTIONS} connections, ` +
      `1 in ${SSE_EVERY} streamed, tracker capacity ${TRACKER_CAPACITY}\n`,
  );
  const { warm, stats, schedule, seconds, start, end, points, snapshots, ...run } = await runSoak(setup);
  const slopes = slopesOf(points, start, end);
  const load = loadFiguresOf(stats, warm, schedule, seconds, {
    serverMs: end.cpuMs - start.cpuMs,
    loadGeneratorMs: run.loadGeneratorCpuMs,
  });
  const verdicts = verdictsOf(slopes, end, load);
  printSummary(load, slopes, start, end, verdicts);
  const totalDurationS = round((Date.now() - started) / 1_000, 1);
  const result = {
    date: new Date().toISOString(),
    command: 'npm run bench:soak',
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      platform: `${os.platform()} ${os.release()}`,
      loadAverageAtEnd: os.loadavg().map((v) => round(v, 2)),
    },
    node: process.version,
    pinning: setup.pinning,
    settings: SETTINGS,
    load,
    forcedGc: { start, end },
    tracker: { size: end.trackerSize, capacity: TRACKER_CAPACITY },
    slopes,
    verdicts,
    heapSnapshots: snapshots,
    totalDurationS,
    samples: points,
  };
  writeResults(result, plot(points, start, end, slopes));
  process.stdout.write(`wrote bench/results/soak.json and bench/results/soak.svg in ${totalDurationS} s\n`);
  if (!verdicts.noFailures || !verdicts.trackerSizeIsCapacity) process.exitCode = 1;
}

function writeResults(result: object, svg: string): void {
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}soak.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(`${dir}soak.svg`, svg);
}

function printSummary(
  load: LoadFigures,
  slopes: Slopes,
  start: MemoryPoint,
  end: MemoryPoint,
  verdicts: Verdicts,
): void {
  const mark = (ok: boolean) => (ok ? 'ok' : 'NOT MET');
  const rows: [string, string][] = [
    ['requests (after warm-up)', `${REQUESTS} (+ ${WARMUP} warm-up)`],
    ['duration', `${load.durationS} s`],
    ['rate offered / achieved', `${RATE} / ${load.achievedRate} req/s`],
    ['behind schedule p50 / p99 / max', `${load.lateP50Ms} / ${load.lateP99Ms} / ${load.lateMaxMs} ms`],
    ['schedule moved on (not kept)', `${load.scheduleMovedOn} times, ${load.scheduleSlipS} s in all`],
    ['latency p50 / p99 / max', `${load.latencyP50Ms} / ${load.latencyP99Ms} / ${load.latencyMaxMs} ms`],
    [
      'CPU: S4 server / load generator',
      `${load.serverCpuPercent} / ${load.loadGeneratorCpuPercent} % of one core`,
    ],
    ['failures', `${load.failures} (+ ${load.warmUpFailures} in warm-up)  ${mark(verdicts.noFailures)}`],
    ['heap used slope', `${slopes.heapUsedMiBPer100k} MiB/100k  ${mark(verdicts.heapSlopeUnder1MiBPer100k)}`],
    ['heap after major GC slope', `${slopes.heapAfterMajorGcMiBPer100k} MiB/100k`],
    ['RSS slope', `${slopes.rssMiBPer100k} MiB/100k  ${mark(verdicts.rssSlopeUnder1MiBPer100k)}`],
    [
      'slopes over the second half',
      `heap ${slopes.heapUsedSecondHalfMiBPer100k}, RSS ${slopes.rssSecondHalfMiBPer100k} MiB/100k`,
    ],
    ['heap used after forced GC', `${start.heapUsedMiB} → ${end.heapUsedMiB} MiB`],
    [
      'forced-GC heap delta',
      `${slopes.forcedGcHeapUsedDeltaMiBPer100k} MiB/100k  ${mark(verdicts.forcedGcHeapDeltaUnder1MiBPer100k)}`,
    ],
    [
      'RSS after forced GC',
      `${start.rssMiB} → ${end.rssMiB} MiB (${slopes.forcedGcRssDeltaMiBPer100k} MiB/100k)`,
    ],
    [
      'tracker size / capacity',
      `${end.trackerSize} / ${TRACKER_CAPACITY}  ${mark(verdicts.trackerSizeIsCapacity)}`,
    ],
  ];
  process.stdout.write(`\n${table(rows)}\n\n`);
  if (load.failureExamples.length > 0) {
    process.stdout.write(`failure examples:\n  ${load.failureExamples.join('\n  ')}\n`);
  }
}

armWatchdog(WATCHDOG_MS / 1_000, 'four times the planned run, plus 2 minutes');
runMain(main);
