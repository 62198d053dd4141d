// The relay benchmark's figures: what one measurement recorded (per round), and the summary of a
// scenario x workload across rounds: medians, and figures paired with a baseline in the same round
// (added latency against S0, throughput ratios against S1u and S2) before taking their median.
import type { ProbeFigures, ThroughputFigures } from './load.js';
import type { WindowStats } from './relay-config.js';
import { HEADLINE_CONNECTIONS, type Scenario } from './relay-plan.js';

/** A throughput step with what the servers reported for it. */
export interface StepRecord extends ThroughputFigures {
  /** CPU µs of the server under test per request (the mock's for S0). */
  cpuUsPerRequest: number;
  /** CPU of the server under test over the window, as a share of one core. */
  serverCpuShare: number;
  eldP99Ms: number;
  /** Upstream attempts per client request, as the mock counted them. */
  upstreamAttemptsPerRequest: number;
  server: WindowStats;
  /** The mock's stats (absent for S0, where the mock is the server). */
  mock?: WindowStats;
}

/** One scenario x workload in one round. */
export interface Measurement {
  round: number;
  workload: string;
  scenario: Scenario;
  probe?: ProbeFigures;
  steps: StepRecord[];
}

/** A scenario x workload across rounds (medians). */
export interface Summary {
  workload: string;
  scenario: Scenario;
  rounds: number;
  p50Us?: number;
  p99Us?: number;
  /** Minus the baseline's (S0 on the same workload; S0 json for the retry and gate cases). */
  addedP50Us?: number;
  addedP99Us?: number;
  firstChunkP50Us?: number;
  addedFirstChunkP50Us?: number;
  chunkGapP50Us?: number;
  addedChunkGapP50Us?: number;
  /** Requests per second by connection count. */
  rps: Record<number, number>;
  ratioToS1u: Record<number, number>;
  ratioToS2: Record<number, number>;
  /** At the headline step (32 connections). */
  cpuUsPerRequest?: number;
  serverCpuShare?: number;
  eldP99Ms?: number;
  loadGeneratorCpuShare?: number;
  upstreamAttemptsPerRequest?: number;
}

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function defined<T>(value: T | undefined): value is T {
  return value !== undefined && !(typeof value === 'number' && Number.isNaN(value));
}

/** Looks up the measurements of one round by workload and scenario. */
export class Figures {
  private readonly byKey = new Map<string, Measurement>();
  readonly rounds: number;

  constructor(readonly measurements: readonly Measurement[]) {
    for (const m of measurements) this.byKey.set(`${m.round}|${m.workload}|${m.scenario}`, m);
    this.rounds = Math.max(0, ...measurements.map((m) => m.round));
  }

  get(round: number, workload: string, scenario: Scenario): Measurement | undefined {
    return this.byKey.get(`${round}|${workload}|${scenario}`);
  }

  /** Median over rounds of `pick(measurement)`. */
  median(
    workload: string,
    scenario: Scenario,
    pick: (m: Measurement) => number | undefined,
  ): number | undefined {
    return median(this.perRound(workload, scenario, pick));
  }

  /** Median over rounds of `combine(pick(measurement), pick(baseline))`, baseline from the same round. */
  paired(
    workload: string,
    scenario: Scenario,
    base: { workload: string; scenario: Scenario },
    pick: (m: Measurement) => number | undefined,
    combine: (value: number, baseline: number) => number,
  ): number | undefined {
    const values: number[] = [];
    for (let round = 1; round <= this.rounds; round++) {
      const m = this.get(round, workload, scenario);
      const b = this.get(round, base.workload, base.scenario);
      const value = m === undefined ? undefined : pick(m);
      const baseline = b === undefined ? undefined : pick(b);
      if (defined(value) && defined(baseline)) values.push(combine(value, baseline));
    }
    return median(values);
  }

  private perRound(
    workload: string,
    scenario: Scenario,
    pick: (m: Measurement) => number | undefined,
  ): number[] {
    const values: number[] = [];
    for (let round = 1; round <= this.rounds; round++) {
      const m = this.get(round, workload, scenario);
      const value = m === undefined ? undefined : pick(m);
      if (defined(value)) values.push(value);
    }
    return values;
  }
}

export function stepAt(m: Measurement, connections: number): StepRecord | undefined {
  return m.steps.find((s) => s.connections === connections);
}

const minus = (value: number, baseline: number) => value - baseline;
const over = (value: number, baseline: number) => value / baseline;

function probeFigures(
  figures: Figures,
  workload: string,
  scenario: Scenario,
  baseWorkload: string,
): Partial<Summary> {
  const base = { workload: baseWorkload, scenario: 'S0' as Scenario };
  const pick = (key: keyof ProbeFigures) => (m: Measurement) => m.probe?.[key];
  const out: Partial<Summary> = {};
  for (const [key, target, added] of [
    ['p50Us', 'p50Us', 'addedP50Us'],
    ['p99Us', 'p99Us', 'addedP99Us'],
    ['firstChunkP50Us', 'firstChunkP50Us', 'addedFirstChunkP50Us'],
    ['chunkGapP50Us', 'chunkGapP50Us', 'addedChunkGapP50Us'],
  ] as const) {
    out[target] = figures.median(workload, scenario, pick(key));
    out[added] = figures.paired(workload, scenario, base, pick(key), minus);
  }
  return out;
}

function stepFigures(figures: Figures, workload: string, scenario: Scenario, connections: readonly number[]) {
  const rps: Record<number, number> = {};
  const ratioToS1u: Record<number, number> = {};
  const ratioToS2: Record<number, number> = {};
  for (const n of connections) {
    const pick = (m: Measurement) => stepAt(m, n)?.rps;
    const value = figures.median(workload, scenario, pick);
    if (value === undefined) continue;
    rps[n] = value;
    const toS1u = figures.paired(workload, scenario, { workload, scenario: 'S1u' }, pick, over);
    const toS2 = figures.paired(workload, scenario, { workload, scenario: 'S2' }, pick, over);
    if (toS1u !== undefined) ratioToS1u[n] = toS1u;
    if (toS2 !== undefined) ratioToS2[n] = toS2;
  }
  const headline = (
    key:
      | 'cpuUsPerRequest'
      | 'serverCpuShare'
      | 'eldP99Ms'
      | 'loadGeneratorCpuShare'
      | 'upstreamAttemptsPerRequest',
  ) => figures.median(workload, scenario, (m) => stepAt(m, HEADLINE_CONNECTIONS)?.[key]);
  return {
    rps,
    ratioToS1u,
    ratioToS2,
    cpuUsPerRequest: headline('cpuUsPerRequest'),
    serverCpuShare: headline('serverCpuShare'),
    eldP99Ms: headline('eldP99Ms'),
    loadGeneratorCpuShare: headline('loadGeneratorCpuShare'),
    upstreamAttemptsPerRequest: headline('upstreamAttemptsPerRequest'),
  };
}

/** The summary of one scenario x workload; latency is compared with S0 on `baseWorkload`. */
export function summarise(
  figures: Figures,
  workload: string,
  scenario: Scenario,
  connections: readonly number[],
  baseWorkload = workload,
): Summary {
  return {
    workload,
    scenario,
    rounds: figures.rounds,
    ...probeFigures(figures, workload, scenario, baseWorkload),
    ...stepFigures(figures, workload, scenario, connections),
  };
}
