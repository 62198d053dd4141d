// The many-stream benchmark: thousands of streamed chat completions at once, each paced like a model
// by the shipped mock upstream (`chunkDelayMs`), through S1 (node:http pipe), S2 (Express +
// http-proxy-middleware) and S4 (the full llmux preset), with S0 (the mock directly) as the baseline
// and Portkey's gateway (PK) as an optional peer. For each level and scenario a fresh mock, server and
// load generators are started, the server is warmed up, its idle RSS read, the level's streams opened
// over a ramp, the server's RSS and CPU read from /proc while every stream is open, and every chunk
// of every stream checked. Everything is on 127.0.0.1; children are pinned and their open-file limit
// raised; every child is killed when the run ends, however it ends.
// Run: npm run bench:streams   (BENCH_QUICK=1 for a smoke run; knobs in bench/streams-config.ts;
// writes bench/results/streams.json and the plots streams-rss.svg and streams-gap.svg beside it)
import { openSync, closeSync, mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { checkProc, listenOverflows, procSample, type ProcSample } from './proc-stats.js';
import {
  checkFileLimit,
  hardFileLimit,
  pinProcesses,
  ServerProcess,
  serverFlags,
  spawnPinned,
  stopChild,
  stopServers,
  type Pinning,
} from './relay-children.js';
import { BENCH_KEY, PACED_MARKER_PREFIX } from './relay-config.js';
import { armWatchdog, runMain } from './run.js';
import {
  readStreamSettings,
  type ClientCount,
  type ClientResult,
  type RunRequest,
  type StreamScenario,
  type StreamSettings,
} from './streams-config.js';
import { CheckedStream, Histogram, type StreamOutcome, type StreamSink } from './streams-load.js';
import { gapPlot, report, rssPlot, skippedLine, type RunFigures, type Skipped } from './streams-report.js';

const START_DELAY_MS = 500;
/** Pause after the warm-up, and again after the collection, before the idle reading. */
const SETTLE_MS = 500;
const WARM_UP_CONCURRENCY = 50;
const WARM_UP_CHUNKS = 50;
const SAMPLE_EVERY_MS = 250;
/** The shortest window in which RSS and CPU are read with every stream open. */
const MIN_PLATEAU_MS = 2_000;
const PORTKEY_START_TIMEOUT_MS = 30_000;
const MIB = 1024 * 1024;
/** A relay holds two sockets per stream: the client's and the upstream's. */
const FILES_PER_STREAM = 2;
/** Files a server holds beside its streams (an idle relay child: about 30), with a margin. */
const FILES_BESIDE_STREAMS = 128;

/** What a level's streams ask for: the body marker makes the mock pace them. */
function streamRequest(chunks: number, chunkDelayMs: number, extraHeaders: Record<string, string>) {
  return {
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      user: `${PACED_MARKER_PREFIX}${chunks}-${chunkDelayMs}`,
      messages: [
        { role: 'system', content: 'You are a terse assistant used by a relay benchmark.' },
        { role: 'user', content: 'Count slowly, one token at a time.' },
      ],
    }),
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${BENCH_KEY}`,
      ...extraHeaders,
    },
    chunks,
  };
}

/** The server under test, whatever started it. */
interface Target {
  url: string;
  pid: number;
  /** Headers the scenario's clients add (Portkey's routing headers). */
  headers: Record<string, string>;
  /** A full garbage collection before the idle reading, where the server can be asked for one. */
  collectGarbage(): Promise<void>;
  stop(): Promise<void>;
}

/** Node flags of the mock and the relays: the benchmarks' own, and a gc() for the idle reading. */
const STREAM_SERVER_FLAGS = [...serverFlags(), '--expose-gc'];

function targetOf(server: ServerProcess, stop: () => Promise<void>): Target {
  return {
    url: server.url,
    pid: server.pid,
    headers: {},
    collectGarbage: async () => {
      await server.ask({ type: 'gc' });
    },
    stop,
  };
}

/** A free loopback port (for a server that only takes a fixed one). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the server exited while starting');
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await sleep(200);
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
}

/** The start script of @portkey-ai/gateway under `dir` (its package folder, or a folder holding it). */
export function portkeyScript(dir: string): { script: string; version: string } {
  for (const packageDir of [dir, path.join(dir, 'node_modules', '@portkey-ai', 'gateway')]) {
    const script = path.join(packageDir, 'build', 'start-server.js');
    if (existsSync(script)) {
      const manifest = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as {
        version: string;
      };
      return { script, version: manifest.version };
    }
  }
  throw new Error(
    `bench: BENCH_STREAMS_PORTKEY=${dir}: no build/start-server.js of @portkey-ai/gateway there`,
  );
}

async function startPortkey(
  settings: StreamSettings,
  mockUrl: string,
  core: number | undefined,
  fileLimit: number,
) {
  const { script } = portkeyScript(settings.portkeyDir!);
  const port = await freePort();
  const log = path.join(os.tmpdir(), `llmux-bench-portkey-${process.pid}.log`);
  const logFd = openSync(log, 'a');
  const child = spawnPinned([process.execPath, script, `--port=${port}`, '--headless'], core, {
    fileLimit,
    env: { ...process.env, NODE_ENV: 'production' },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  try {
    await waitForPort(port, PORTKEY_START_TIMEOUT_MS, () => child.exitCode === null);
  } catch (err) {
    await stopChild(child);
    throw new Error(`Portkey did not start (${(err as Error).message}); its output is in ${log}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    headers: { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${mockUrl}/v1` },
    collectGarbage: async () => {},
    stop: () => stopChild(child),
    log,
  };
}

function profileFlags(settings: StreamSettings, scenario: StreamScenario, level: number): string[] {
  if (settings.cpuProfile !== `${scenario}@${level}`) return [];
  const dir = path.join(os.tmpdir(), 'llmux-bench-streams-prof');
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`  --cpu-prof of ${scenario} at ${level} streams into ${dir}\n`);
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

async function startTarget(
  settings: StreamSettings,
  pinning: Pinning,
  scenario: StreamScenario,
  level: number,
  mock: ServerProcess,
  fileLimit: number,
): Promise<Target> {
  if (scenario === 'S0') return targetOf(mock, async () => {});
  if (scenario === 'PK') return startPortkey(settings, mock.url, pinning.relayCore, fileLimit);
  const flags = [...STREAM_SERVER_FLAGS, ...profileFlags(settings, scenario, level)];
  const server = await ServerProcess.start(scenario, [scenario, mock.url, String(level)], pinning.relayCore, {
    flags,
    fileLimit,
  });
  return targetOf(server, () => server.stop());
}

/** A sink that only counts, for the warm-up. */
class WarmUpSink implements StreamSink {
  readonly gaps = new Histogram();
  readonly firstChunks = new Histogram();
  chunks = 0;
  flowing = 0;
  ok = 0;
  readonly failures: string[] = [];
  private resolveEnd: (() => void) | undefined;

  constructor(private left: number) {}

  ended(outcome: StreamOutcome, detail: string): void {
    if (outcome === 'ok') this.ok++;
    else this.failures.push(`${outcome}: ${detail}`);
    if (--this.left === 0) this.resolveEnd?.();
  }

  whenEnded(): Promise<void> {
    return this.left === 0 ? Promise.resolve() : new Promise((resolve) => (this.resolveEnd = resolve));
  }
}

/** Unpaced streams through the target, a few at a time, every one checked. */
async function warmUp(settings: StreamSettings, target: Target, scenario: StreamScenario): Promise<void> {
  const request = streamRequest(WARM_UP_CHUNKS, 0, target.headers);
  const pool = new Pool(target.url, { connections: WARM_UP_CONCURRENCY, pipelining: 1 });
  try {
    const total = settings.warmUpStreams;
    for (let sent = 0; sent < total; sent += WARM_UP_CONCURRENCY) {
      const batch = Math.min(WARM_UP_CONCURRENCY, total - sent);
      const sink = new WarmUpSink(batch);
      for (let i = 0; i < batch; i++) new CheckedStream(request, sink).send(pool);
      await sink.whenEnded();
      if (sink.failures.length > 0) {
        const hint =
          scenario === 'PK'
            ? ' (Portkey 1.15 answers streams with a 500 under @hono/node-server 1.14.2 and later, Portkey-AI/gateway#1389: see BENCHMARKS.md)'
            : '';
        throw new Error(`warm-up of ${scenario}: ${sink.failures[0]}${hint}`);
      }
    }
  } finally {
    await pool.destroy();
  }
}

/** When each stream opens, ms after the start, for `clients` generators taking turns. */
function offsetsOf(level: number, rampMs: number, clients: number): number[][] {
  const offsets: number[][] = Array.from({ length: clients }, () => []);
  for (let i = 0; i < level; i++) offsets[i % clients]!.push((i * rampMs) / level);
  return offsets;
}

/** One reading of every process of a run, and of the chunks received so far. */
interface Reading {
  atMs: number;
  target: ProcSample;
  mock: ProcSample;
  generators: ProcSample;
  chunks: number;
  /** Streams whose first chunk arrived and that have not ended. */
  flowing: number;
}

function sumSamples(samples: readonly ProcSample[]): ProcSample {
  return samples.reduce((sum, s) => ({ rssBytes: sum.rssBytes + s.rssBytes, cpuUs: sum.cpuUs + s.cpuUs }), {
    rssBytes: 0,
    cpuUs: 0,
  });
}

async function readAll(
  target: Target,
  mock: ServerProcess,
  clients: readonly ServerProcess[],
): Promise<Reading> {
  const counts = await Promise.all(clients.map((c) => c.ask<ClientCount>({ type: 'count' })));
  return {
    atMs: Date.now(),
    target: procSample(target.pid),
    mock: procSample(mock.pid),
    generators: sumSamples(clients.map((c) => procSample(c.pid))),
    chunks: counts.reduce((sum, c) => sum + c.chunks, 0),
    flowing: counts.reduce((sum, c) => sum + c.flowing, 0),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length === 0
    ? NaN
    : sorted.length % 2 === 1
      ? sorted[mid]!
      : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The shape of one level: ramp, stream length, the window in which every stream is open. */
export interface LevelPlan {
  chunks: number;
  chunkDelayMs: number;
  rampMs: number;
  streamMs: number;
  plateauStartMs: number;
  plateauEndMs: number;
  timeoutMs: number;
}

export function levelPlan(settings: StreamSettings, level: number): LevelPlan {
  const chunkDelayMs = Math.round(1_000 / settings.chunksPerSecond);
  const chunks = Math.max(2, Math.round(settings.chunksPerSecond * settings.durationS));
  const rampMs = Math.max(500, (level / settings.rampPerSecond) * 1_000);
  const streamMs = chunks * chunkDelayMs;
  const marginMs = Math.min(1_000, streamMs / 6);
  const plateauStartMs = rampMs + marginMs;
  const plateauEndMs = Math.max(plateauStartMs + 500, streamMs - marginMs);
  return {
    chunks,
    chunkDelayMs,
    rampMs,
    streamMs,
    plateauStartMs,
    plateauEndMs,
    timeoutMs: streamMs * 2 + 20_000,
  };
}

interface RunContext {
  settings: StreamSettings;
  pinning: Pinning;
  fileLimit: number;
}

async function startClients(context: RunContext, count: number): Promise<ServerProcess[]> {
  const script = './streams-client.ts';
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      ServerProcess.start(`generator ${i + 1}`, [], context.pinning.loadGeneratorCore, {
        script,
        flags: [],
        fileLimit: context.fileLimit,
      }),
    ),
  );
}

/** One scenario at one level, from fresh processes to figures. */
async function runOne(context: RunContext, scenario: StreamScenario, level: number): Promise<RunFigures> {
  const { settings, pinning, fileLimit } = context;
  const plan = levelPlan(settings, level);
  const clientCount = Math.ceil(level / settings.streamsPerClient);
  const [mock, clients] = await Promise.all([
    ServerProcess.start('mock', ['mock'], pinning.mockCore, { flags: STREAM_SERVER_FLAGS, fileLimit }),
    startClients(context, clientCount),
  ]);
  const target = await startTarget(settings, pinning, scenario, level, mock, fileLimit);
  try {
    await warmUp(settings, target, scenario);
    await sleep(SETTLE_MS);
    await target.collectGarbage();
    await sleep(SETTLE_MS);
    const idle = procSample(target.pid);
    const request = streamRequest(plan.chunks, plan.chunkDelayMs, target.headers);
    const overflowsBefore = listenOverflows();
    const startAtMs = Date.now() + START_DELAY_MS;
    const offsets = offsetsOf(level, plan.rampMs, clientCount);
    await Promise.all(
      clients.map((client, i) =>
        client.ask({
          type: 'run',
          url: target.url,
          startAtMs,
          offsetsMs: offsets[i]!,
          ...request,
          timeoutMs: plan.timeoutMs,
        } satisfies RunRequest),
      ),
    );
    const rss: { atMs: number; rssMiB: number }[] = [];
    // The window opens once every stream flows (a stream whose handshake was dropped starts late),
    // or when only MIN_PLATEAU_MS is left before the first streams end.
    const latestStartMs = Math.max(plan.plateauStartMs, plan.plateauEndMs - MIN_PLATEAU_MS);
    let plateauStart: Reading | undefined;
    let plateauEnd: Reading | undefined;
    for (let at = 0; at <= plan.plateauEndMs; at += SAMPLE_EVERY_MS) {
      await sleep(Math.max(0, startAtMs + at - Date.now()));
      rss.push({ atMs: at, rssMiB: procSample(target.pid).rssBytes / MIB });
      if (plateauStart === undefined && at >= plan.plateauStartMs) {
        const reading = await readAll(target, mock, clients);
        if (reading.flowing === level || at >= latestStartMs) plateauStart = reading;
      }
      if (plateauStart !== undefined && at + SAMPLE_EVERY_MS > plan.plateauEndMs)
        plateauEnd = await readAll(target, mock, clients);
    }
    const results = await Promise.all(
      clients.map((c) => c.ask<ClientResult>({ type: 'result' }, plan.timeoutMs + 30_000)),
    );
    const wallMs = Date.now() - startAtMs;
    const from = plateauStart!.atMs - startAtMs;
    const plateauRss = rss.filter((s) => s.atMs >= from && s.atMs <= plan.plateauEndMs);
    return figuresOf(scenario, level, plan, {
      idle,
      plateauStart: plateauStart!,
      plateauEnd: plateauEnd!,
      plateauRssMiB: median(plateauRss.map((s) => s.rssMiB)),
      rss,
      results,
      wallMs,
      startAtMs,
      listenOverflows: listenOverflows() - overflowsBefore,
    });
  } finally {
    await Promise.all([...clients.map((c) => c.stop()), target.stop()]);
    await mock.stop();
  }
}

interface RunReadings {
  idle: ProcSample;
  plateauStart: Reading;
  plateauEnd: Reading;
  plateauRssMiB: number;
  rss: { atMs: number; rssMiB: number }[];
  results: ClientResult[];
  wallMs: number;
  startAtMs: number;
  listenOverflows: number;
}

function figuresOf(scenario: StreamScenario, level: number, plan: LevelPlan, r: RunReadings): RunFigures {
  const gaps = new Histogram();
  const firstChunks = new Histogram();
  const outcomes: Record<string, number> = {};
  const failures: string[] = [];
  let chunks = 0;
  for (const result of r.results) {
    gaps.merge(result.gaps);
    firstChunks.merge(result.firstChunks);
    for (const [outcome, count] of Object.entries(result.outcomes))
      outcomes[outcome] = (outcomes[outcome] ?? 0) + count;
    failures.push(...result.failures);
    chunks += result.chunks;
  }
  const { plateauStart: a, plateauEnd: b } = r;
  const plateauWallUs = (b.atMs - a.atMs) * 1_000;
  const plateauChunks = b.chunks - a.chunks;
  // Streams open over the window (all of them, unless some started late or ended early).
  const openInPlateau = Math.max(1, Math.round((a.flowing + b.flowing) / 2));
  const ms = (us: number) => us / 1_000;
  return {
    scenario,
    level,
    ok: outcomes.ok ?? 0,
    late: outcomes.timeout ?? 0,
    lost: level - (outcomes.ok ?? 0) - (outcomes.timeout ?? 0),
    outcomes,
    failures: failures.slice(0, 5),
    chunks,
    expectedChunks: level * plan.chunks,
    paceMs: plan.chunkDelayMs,
    gapP50Ms: ms(gaps.percentile(50)),
    gapP99Ms: ms(gaps.percentile(99)),
    gapP999Ms: ms(gaps.percentile(99.9)),
    gapMaxMs: ms(gaps.maxUs),
    firstChunkP50Ms: ms(firstChunks.percentile(50)),
    firstChunkP99Ms: ms(firstChunks.percentile(99)),
    idleRssMiB: r.idle.rssBytes / MIB,
    plateauRssMiB: r.plateauRssMiB,
    openInPlateau,
    plateauStartS: (a.atMs - r.startAtMs) / 1_000,
    listenOverflows: r.listenOverflows,
    rssPerStreamKiB: ((r.plateauRssMiB - r.idle.rssBytes / MIB) * 1024) / openInPlateau,
    // CPU ms per 1,000 chunks = CPU µs per chunk.
    cpuMsPer1kChunks: plateauChunks > 0 ? (b.target.cpuUs - a.target.cpuUs) / plateauChunks : NaN,
    serverCpuShare: (b.target.cpuUs - a.target.cpuUs) / plateauWallUs,
    mockCpuShare: (b.mock.cpuUs - a.mock.cpuUs) / plateauWallUs,
    generatorCpuShare: (b.generators.cpuUs - a.generators.cpuUs) / plateauWallUs,
    deliveredShare:
      plateauChunks / ((plateauWallUs / 1_000_000) * openInPlateau * (1_000 / plan.chunkDelayMs)),
    plateauS: plateauWallUs / 1_000_000,
    wallS: r.wallMs / 1_000,
    rss: r.rss,
  };
}

function commandLine(): string {
  const knobs = Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_'))
    .map(([name, value]) => `${name}=${value}`);
  return [...knobs, 'npm run bench:streams'].join(' ');
}

/**
 * The scenarios of a level: S0 first (the mock and the generators alone tell whether this machine can
 * offer the level at all), then the others, rotated so none always runs first.
 */
function turnOrder(scenarios: readonly StreamScenario[], index: number): StreamScenario[] {
  const others = scenarios.filter((s) => s !== 'S0');
  const shift = index % Math.max(1, others.length);
  const rotated = [...others.slice(shift), ...others.slice(0, shift)];
  return scenarios.includes('S0') ? ['S0', ...rotated] : rotated;
}

/** Below this share of the pace delivered by S0, the machine cannot offer the level (see {@link rigHolds}). */
const RIG_DELIVERED_MIN = 0.9;

/**
 * Whether the mock and the generators alone (S0) kept up with the level: every stream complete and
 * 90 % of the paced chunks delivered. When they did not, higher levels would measure the machine,
 * not the relays, and are skipped (unless BENCH_STREAMS_ALL_LEVELS=1).
 */
function rigHolds(s0: RunFigures): boolean {
  return s0.lost === 0 && s0.late === 0 && s0.deliveredShare >= RIG_DELIVERED_MIN;
}

async function main(): Promise<void> {
  const started = Date.now();
  const settings = readStreamSettings();
  armWatchdog(settings.watchdogS);
  checkProc();
  const maxLevel = Math.max(...settings.levels);
  const fileLimit = FILES_PER_STREAM * maxLevel + FILES_BESIDE_STREAMS;
  const hard = hardFileLimit();
  const fits = hard === undefined ? undefined : Math.floor((hard - FILES_BESIDE_STREAMS) / FILES_PER_STREAM);
  checkFileLimit(
    fileLimit,
    `A relay holds ${FILES_PER_STREAM} sockets per stream, so at most ${fits ?? '?'} streams fit: ` +
      `lower BENCH_STREAMS_LEVELS (e.g. BENCH_STREAMS_LEVELS=1000,5000,${fits ?? 5000})`,
  );
  const portkey = settings.portkeyDir === undefined ? undefined : portkeyScript(settings.portkeyDir);
  const pinning = pinProcesses();
  const loadAtStart = os.loadavg();
  const context: RunContext = { settings, pinning, fileLimit };
  const runs: RunFigures[] = [];
  let skipped: Skipped | undefined;
  for (const [index, level] of settings.levels.entries()) {
    for (const scenario of turnOrder(settings.scenarios, index)) {
      process.stderr.write(`level ${level}: ${scenario} ...\n`);
      const figures = await runOne(context, scenario, level);
      process.stderr.write(`  ${progressLine(figures)}\n`);
      runs.push(figures);
    }
    const s0 = runs.find((r) => r.scenario === 'S0' && r.level === level);
    if (s0 !== undefined && !rigHolds(s0) && !settings.allLevels) {
      skipped = {
        levels: settings.levels.slice(index + 1),
        after: level,
        s0DeliveredShare: s0.deliveredShare,
      };
      if (skipped.levels.length > 0) process.stderr.write(`${skippedLine(skipped)}\n`);
      break;
    }
  }
  await stopServers();
  const date = new Date();
  const durationS = (Date.now() - started) / 1_000;
  const cpus = os.cpus();
  const header = {
    date: date.toISOString(),
    command: commandLine(),
    machine: `${cpus.length} x ${cpus[0]?.model ?? 'unknown cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, node ${process.version}`,
    loadAverage: [...loadAtStart, ...os.loadavg()].map((l) => Number(l.toFixed(2))),
    pinning: pinning.note,
    fileLimit,
    portkeyVersion: portkey?.version,
  };
  const { text, analysis } = report(header, settings, runs, skipped);
  process.stdout.write(`\n${text}\n`);
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const base = settings.outputName;
  writeFileSync(
    `${dir}${base}.json`,
    `${JSON.stringify({ ...header, settings, skipped, analysis, runs, report: text, durationS }, null, 2)}\n`,
  );
  writeFileSync(`${dir}${base}-rss.svg`, rssPlot(header.date, settings, analysis));
  writeFileSync(`${dir}${base}-gap.svg`, gapPlot(header.date, settings, analysis));
  process.stdout.write(
    `\nwrote bench/results/${base}.json, ${base}-rss.svg and ${base}-gap.svg; the run took ${durationS.toFixed(0)} s\n`,
  );
}

function progressLine(f: RunFigures): string {
  return (
    `${f.ok}/${f.level} ok, gap p50 ${f.gapP50Ms.toFixed(1)} ms p99 ${f.gapP99Ms.toFixed(1)} ms, ` +
    `RSS ${f.idleRssMiB.toFixed(0)} -> ${f.plateauRssMiB.toFixed(0)} MiB (${f.rssPerStreamKiB.toFixed(1)} KiB/stream), ` +
    `CPU ${f.cpuMsPer1kChunks.toFixed(1)} ms/1k chunks (server ${(f.serverCpuShare * 100).toFixed(0)}%, ` +
    `mock ${(f.mockCpuShare * 100).toFixed(0)}%, generators ${(f.generatorCpuShare * 100).toFixed(0)}%), ` +
    `delivered ${(f.deliveredShare * 100).toFixed(0)}%` +
    (f.failures.length > 0 ? `; first failure: ${f.failures[0]}` : '')
  );
}

runMain(main);
