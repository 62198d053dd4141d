// Settings of the many-stream benchmark (bench/streams.ts), read once from the environment, and the
// messages between it and its load generator children (bench/streams-client.ts).
import { envNumber } from './run.js';
import type { HistogramData, StreamOutcome } from './streams-load.js';

/** S0 the mock directly, S1 node:http pipe, S2 Express + http-proxy-middleware, S4 the full preset, PK Portkey. */
export const STREAM_SCENARIOS = ['S0', 'S1', 'S2', 'S4', 'PK'] as const;
export type StreamScenario = (typeof STREAM_SCENARIOS)[number];

/** Run settings; every one can be set from the environment (names beside each). */
export interface StreamSettings {
  quick: boolean;
  /** Concurrent streams of each level. BENCH_STREAMS_LEVELS, comma-separated. */
  levels: number[];
  /** Content chunks per second of every stream. BENCH_STREAMS_RATE. */
  chunksPerSecond: number;
  /** Length of every stream, s (chunks = rate x duration). BENCH_STREAMS_DURATION_S. */
  durationS: number;
  /**
   * Streams opened per second while a level ramps up. BENCH_STREAMS_RAMP_PER_S. Faster overflows the
   * mock's accept queue (Node's default backlog of 511) when its event loop is busy: resets, not relay faults.
   */
  rampPerSecond: number;
  /** Streams per load generator process. BENCH_STREAMS_PER_CLIENT. */
  streamsPerClient: number;
  /** Scenarios, in turn at each level. BENCH_STREAMS_SCENARIOS, comma-separated. */
  scenarios: StreamScenario[];
  /** A relay falls behind at the first level where its added gap p99 exceeds this, ms. BENCH_STREAMS_BEHIND_MS. */
  behindMs: number;
  /** Unpaced streams through each server before it is measured (JIT warm-up). BENCH_STREAMS_WARMUP. */
  warmUpStreams: number;
  /** The package directory of @portkey-ai/gateway (or a folder whose node_modules holds it). BENCH_STREAMS_PORTKEY. */
  portkeyDir: string | undefined;
  /** `<scenario>@<level>`: that server runs with --cpu-prof. BENCH_STREAMS_CPU_PROF. */
  cpuProfile: string | undefined;
  /**
   * Run every level even after S0 (the mock and generators alone) could not keep the pace at one.
   * BENCH_STREAMS_ALL_LEVELS=1.
   */
  allLevels: boolean;
  /** Results go to bench/results/<name>.json, <name>-rss.svg, <name>-gap.svg. BENCH_STREAMS_OUT. */
  outputName: string;
  /** The run gives up after this long, s. BENCH_WATCHDOG_S. */
  watchdogS: number;
}

function envList(name: string, fallback: readonly string[]): string[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return [...fallback];
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function levelsOf(raw: readonly string[]): number[] {
  return raw.map((item) => {
    const level = Number(item);
    if (!Number.isSafeInteger(level) || level <= 0)
      throw new TypeError(`bench: BENCH_STREAMS_LEVELS must list positive integers, got ${item}`);
    return level;
  });
}

function scenariosOf(raw: readonly string[]): StreamScenario[] {
  return raw.map((item) => {
    if (!(STREAM_SCENARIOS as readonly string[]).includes(item)) {
      throw new TypeError(`bench: BENCH_STREAMS_SCENARIOS: unknown ${item} (${STREAM_SCENARIOS.join(', ')})`);
    }
    return item as StreamScenario;
  });
}

/**
 * Defaults: 1k, 5k and 10k streams of 30 chunks/s for 20 s through S0, S1, S2 and S4 (and PK when
 * BENCH_STREAMS_PORTKEY is set), about 8 minutes; BENCH_QUICK=1 for a smoke run under a minute.
 */
export function readStreamSettings(): StreamSettings {
  const quick = process.env.BENCH_QUICK === '1';
  const portkeyDir = process.env.BENCH_STREAMS_PORTKEY || undefined;
  const defaultScenarios = ['S0', 'S1', 'S2', 'S4', ...(portkeyDir === undefined ? [] : ['PK'])];
  const scenarios = scenariosOf(envList('BENCH_STREAMS_SCENARIOS', defaultScenarios));
  const outputName = process.env.BENCH_STREAMS_OUT;
  if (outputName !== undefined && !/^[\w.-]+$/.test(outputName)) {
    throw new TypeError(`bench: BENCH_STREAMS_OUT must be a plain file name, got ${outputName}`);
  }
  if (scenarios.includes('PK') && portkeyDir === undefined) {
    throw new TypeError('bench: scenario PK needs BENCH_STREAMS_PORTKEY (see BENCHMARKS.md)');
  }
  return {
    quick,
    levels: levelsOf(envList('BENCH_STREAMS_LEVELS', quick ? ['200'] : ['1000', '5000', '10000'])),
    chunksPerSecond: envNumber('BENCH_STREAMS_RATE', 30),
    durationS: envNumber('BENCH_STREAMS_DURATION_S', quick ? 3 : 20),
    rampPerSecond: envNumber('BENCH_STREAMS_RAMP_PER_S', 1_000),
    streamsPerClient: envNumber('BENCH_STREAMS_PER_CLIENT', 2_500),
    scenarios,
    behindMs: envNumber('BENCH_STREAMS_BEHIND_MS', 5),
    warmUpStreams: envNumber('BENCH_STREAMS_WARMUP', quick ? 50 : 300),
    portkeyDir,
    cpuProfile: process.env.BENCH_STREAMS_CPU_PROF || undefined,
    allLevels: process.env.BENCH_STREAMS_ALL_LEVELS === '1',
    outputName: process.env.BENCH_STREAMS_OUT || (quick ? 'streams-quick' : 'streams'),
    watchdogS: envNumber('BENCH_WATCHDOG_S', quick ? 120 : 1_500),
  };
}

/** Parent → generator: open `streams` streams to `url`, the i-th of them at `startAtMs + offsets[i]`. */
export interface RunRequest {
  type: 'run';
  url: string;
  /** Epoch ms (Date.now) of offset 0; every generator shares the clock. */
  startAtMs: number;
  /** When each stream of this generator opens, ms after `startAtMs`. */
  offsetsMs: number[];
  body: string;
  headers: Record<string, string>;
  chunks: number;
  /** A stream not ended this long after it was sent is aborted and counted as timed out. */
  timeoutMs: number;
}

/** Parent → generator: how far along it is (answered at once with a {@link ClientCount}). */
export interface CountRequest {
  type: 'count';
}

/** Parent → generator: the figures, answered with a {@link ClientResult} once every stream ended. */
export interface ResultRequest {
  type: 'result';
}

export type ClientRequest = RunRequest | CountRequest | ResultRequest;

export interface ClientCount {
  /** Content chunks received so far, every stream together. */
  chunks: number;
  /** Streams sent and not ended. */
  open: number;
  /** Streams whose first content chunk arrived and that have not ended. */
  flowing: number;
}

export interface ClientResult {
  streams: number;
  outcomes: Record<StreamOutcome, number>;
  /** The first few failures, for the report. */
  failures: string[];
  chunks: number;
  gaps: HistogramData;
  firstChunks: HistogramData;
}
