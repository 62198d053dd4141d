// What the relay benchmark measures: its settings (env knobs), the request bodies of each workload
// and which scenarios run which workload.
import { RETRY_MARKERS, SSE_MARKER_PREFIX, type RetryMarker } from './relay-config.js';
import type { Workload } from './load.js';
import { envNumber } from './run.js';

export const SCENARIOS = ['S0', 'S1', 'S1u', 'S1e', 'S2', 'S3', 'S4'] as const;
/** The S4 variants: retry (S4r) and gate saturation (S4g). */
export const VARIANTS = ['S4r', 'S4g'] as const;
export type Scenario = (typeof SCENARIOS)[number] | (typeof VARIANTS)[number];

/** The connection count the targets and single-step workloads use. */
export const HEADLINE_CONNECTIONS = 32;

/** Run settings; every one can be set from the environment. */
export interface Settings {
  quick: boolean;
  rounds: number;
  /** Length of each throughput step. */
  throughputMs: number;
  /**
   * Requests every server gets before the first round, at 8 connections, spread over its
   * workloads: a fresh process spends its first few thousand requests on JIT compilation, which
   * shows as CPU time per request (measured: about 4x at first, settled after about 5000 for S4).
   */
  warmUpRequests: number;
  /** Warm-up before each measurement of a round, at 8 connections. */
  roundWarmUpMs: number;
  /** Requests of a one-in-flight probe (JSON and bodies; SSE probes send half as many). */
  probeRequests: number;
  /** A probe stops early after this long (having sent at least 50 requests). */
  probeMaxMs: number;
  /** Connection counts of the JSON workload's throughput steps. */
  connections: readonly number[];
  /** Run every scenario on every workload, not only S0, S1u, S2 and S4. */
  allScenarios: boolean;
  /** The run gives up after this long. */
  watchdogS: number;
}

/** Defaults: about 5 minutes; BENCH_QUICK=1 for a smoke run of about a minute. */
export function readSettings(): Settings {
  const quick = process.env.BENCH_QUICK === '1';
  return {
    quick,
    rounds: envNumber('BENCH_ROUNDS', quick ? 1 : 3),
    throughputMs: envNumber('BENCH_THROUGHPUT_MS', quick ? 400 : 1_250),
    warmUpRequests: envNumber('BENCH_WARMUP_REQUESTS', quick ? 1_500 : 6_000),
    roundWarmUpMs: envNumber('BENCH_ROUND_WARMUP_MS', quick ? 100 : 250),
    probeRequests: envNumber('BENCH_PROBE_REQUESTS', quick ? 300 : 1_500),
    probeMaxMs: envNumber('BENCH_PROBE_MAX_MS', quick ? 300 : 1_000),
    connections: [1, 8, 32, 128],
    allScenarios: process.env.BENCH_ALL === '1',
    watchdogS: envNumber('BENCH_WATCHDOG_S', quick ? 300 : 900),
  };
}

const messages = [
  { role: 'system', content: 'You are a terse assistant used by a relay benchmark.' },
  {
    role: 'user',
    content: 'Say hello in a few words, then count from one to ten, and end with a short goodbye line.',
  },
  { role: 'user', content: 'Keep the whole answer under sixty tokens.' },
];

function body(fields: Record<string, unknown>): string {
  return JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, ...fields, messages });
}

/** A JSON request of exactly `bytes` bytes: the messages plus a filler message of plain words. */
function paddedBody(bytes: number): string {
  const filler = (fill: string) =>
    JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 64,
      messages: [...messages, { role: 'user', content: fill }],
    });
  const missing = bytes - Buffer.byteLength(filler(''));
  if (missing < 0) throw new Error(`bench: a ${bytes}-byte body is smaller than the messages`);
  return filler('lorem ipsum dolor sit amet '.repeat(Math.ceil(missing / 27)).slice(0, missing));
}

const sse = (chunks: number): Workload => ({
  name: `sse-${chunks}`,
  body: JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 256,
    stream: true,
    user: `${SSE_MARKER_PREFIX}${chunks}`,
    messages,
  }),
  chunks,
});
const retryCase = (marker: RetryMarker): Workload => ({
  name: marker,
  body: body({ user: marker }),
  chunks: 0,
});

export const JSON_WORKLOAD: Workload = { name: 'json', body: body({}), chunks: 0 };

/** One workload and the scenarios that run it. */
export interface PlanItem {
  workload: Workload;
  scenarios: readonly Scenario[];
  /** Throughput steps, in connections. */
  connections: readonly number[];
  /** Whether a one-in-flight probe runs first. */
  probe: boolean;
  /** Upstream attempts the mock must see per client request. */
  attemptsPerRequest: number;
}

/** The matrix: JSON on every scenario at every connection count; the rest on a subset at 32. */
export function plan(settings: Settings): PlanItem[] {
  const subset: readonly Scenario[] = settings.allScenarios ? SCENARIOS : ['S0', 'S1u', 'S2', 'S4'];
  const single = [HEADLINE_CONNECTIONS];
  const item = (workload: Workload, scenarios: readonly Scenario[], attemptsPerRequest = 1): PlanItem => ({
    workload,
    scenarios,
    connections: single,
    probe: true,
    attemptsPerRequest,
  });
  return [
    { ...item(JSON_WORKLOAD, SCENARIOS), connections: settings.connections },
    item({ name: 'body-1k', body: paddedBody(1_024), chunks: 0 }, subset),
    item({ name: 'body-100k', body: paddedBody(102_400), chunks: 0 }, subset),
    item(sse(1), subset),
    item(sse(20), subset),
    item(sse(200), subset),
    ...(Object.keys(RETRY_MARKERS) as RetryMarker[]).map((marker) => item(retryCase(marker), ['S4r'], 2)),
    { ...item({ ...JSON_WORKLOAD, name: 'gate-saturation' }, ['S4g']), probe: false },
  ];
}
