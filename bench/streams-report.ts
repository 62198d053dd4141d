// The many-stream benchmark's report: figures paired within a level (added gap against S0, RSS and
// CPU ratios against S2 and S1), the first level where each server falls behind, the issue's stream
// targets with MET/MISSED, the text tables, and the two SVG plots (RSS per stream and p99 added gap
// against concurrency).
import { fmt, table } from './relay-report.js';
import type { StreamScenario, StreamSettings } from './streams-config.js';
import { svgLineChart, type PlotSeries } from './svg-plot.js';

/** What one scenario did at one level (bench/streams.ts measures it). */
export interface RunFigures {
  scenario: StreamScenario;
  level: number;
  /** Streams that ended with every chunk in order and [DONE]. */
  ok: number;
  /** Streams that broke: an error, a bad status, a chunk missing or out of order, no [DONE]. */
  lost: number;
  /** Streams still running, in order, at the run's bound (2 x their length + 20 s): cut by the generator. */
  late: number;
  outcomes: Record<string, number>;
  failures: string[];
  chunks: number;
  expectedChunks: number;
  /** The mock's delay before each chunk, ms. */
  paceMs: number;
  gapP50Ms: number;
  gapP99Ms: number;
  gapP999Ms: number;
  gapMaxMs: number;
  firstChunkP50Ms: number;
  firstChunkP99Ms: number;
  /** Streams flowing while RSS and CPU were read (the mean of the window's two ends). */
  openInPlateau: number;
  /** When that window opened, s after the first stream was sent. */
  plateauStartS: number;
  /** Handshakes the kernel dropped during the run because an accept queue was full (any process). */
  listenOverflows: number;
  idleRssMiB: number;
  /** Median of the RSS samples of that window. */
  plateauRssMiB: number;
  /** (plateauRssMiB - idleRssMiB) / openInPlateau. */
  rssPerStreamKiB: number;
  /** Server CPU time per 1,000 content chunks delivered, while every stream was open. */
  cpuMsPer1kChunks: number;
  /** Shares of one core over the plateau. */
  serverCpuShare: number;
  mockCpuShare: number;
  generatorCpuShare: number;
  /** Chunks delivered over the window / chunks the pace offers the streams open in it (1000 / paceMs per s each). */
  deliveredShare: number;
  plateauS: number;
  wallS: number;
  rss: { atMs: number; rssMiB: number }[];
}

/** A run with the figures that need the other scenarios of its level. */
export interface RunAnalysis {
  scenario: StreamScenario;
  level: number;
  /** p99 gap minus S0's p99 gap at the same level. */
  addedGapP99Ms: number | undefined;
  /** p99 gap minus the pace. */
  latenessP99Ms: number;
  rssPerStreamKiB: number;
  rssToS2: number | undefined;
  rssToS1: number | undefined;
  cpuToS2: number | undefined;
  cpuToS1: number | undefined;
  lost: number;
  /** Added gap p99 above the threshold (for S0: lateness), or a stream lost or late. */
  behind: boolean;
}

export interface StreamTarget {
  name: string;
  measured: string;
  met: boolean | undefined;
}

export interface Analysis {
  runs: RunAnalysis[];
  /** Per scenario: the first level where it fell behind, or undefined when it never did. */
  firstBehind: Partial<Record<StreamScenario, number | null>>;
  targets: StreamTarget[];
}

/** Levels not run because S0 could not keep the pace at a lower one. */
export interface Skipped {
  levels: number[];
  after: number;
  s0DeliveredShare: number;
}

export function skippedLine(skipped: Skipped): string {
  return (
    `skipped levels ${skipped.levels.join(', ')}: at ${skipped.after} streams the mock and the generators alone (S0) ` +
    `delivered ${(skipped.s0DeliveredShare * 100).toFixed(0)}% of the pace (or lost streams), so higher levels would ` +
    'measure this machine, not the relays (BENCH_STREAMS_ALL_LEVELS=1 runs them anyway)'
  );
}

export interface ReportHeader {
  date: string;
  command: string;
  machine: string;
  /** 1, 5 and 15 min load averages at the start, then at the end. */
  loadAverage: number[];
  pinning: string;
  fileLimit: number;
  portkeyVersion: string | undefined;
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? undefined
    : a / b;

export function analyse(settings: StreamSettings, runs: readonly RunFigures[]): Analysis {
  const at = (scenario: StreamScenario, level: number) =>
    runs.find((r) => r.scenario === scenario && r.level === level);
  const analysed = runs.map((run): RunAnalysis => {
    const s0 = at('S0', run.level);
    const s1 = at('S1', run.level);
    const s2 = at('S2', run.level);
    const addedGapP99Ms = run.scenario === 'S0' || s0 === undefined ? undefined : run.gapP99Ms - s0.gapP99Ms;
    const latenessP99Ms = run.gapP99Ms - run.paceMs;
    const slow = run.scenario === 'S0' ? latenessP99Ms : (addedGapP99Ms ?? latenessP99Ms);
    return {
      scenario: run.scenario,
      level: run.level,
      addedGapP99Ms,
      latenessP99Ms,
      rssPerStreamKiB: run.rssPerStreamKiB,
      rssToS2: ratio(run.rssPerStreamKiB, s2?.rssPerStreamKiB),
      rssToS1: ratio(run.rssPerStreamKiB, s1?.rssPerStreamKiB),
      cpuToS2: ratio(run.cpuMsPer1kChunks, s2?.cpuMsPer1kChunks),
      cpuToS1: ratio(run.cpuMsPer1kChunks, s1?.cpuMsPer1kChunks),
      lost: run.lost,
      behind: run.lost > 0 || run.late > 0 || !(slow <= settings.behindMs),
    };
  });
  const firstBehind: Analysis['firstBehind'] = {};
  for (const scenario of settings.scenarios) {
    const levels = analysed.filter((r) => r.scenario === scenario).sort((a, b) => a.level - b.level);
    firstBehind[scenario] = levels.find((r) => r.behind)?.level ?? null;
  }
  return { runs: analysed, firstBehind, targets: targets(analysed) };
}

/**
 * The lowest level that stands for "10k streams": 10,000 itself, or the most a hard open-file limit of
 * 20,000 lets one relay hold (two sockets per stream: 9,936), rounded down.
 */
const TEN_K_AT_LEAST = 9_900;

function targets(runs: readonly RunAnalysis[]): StreamTarget[] {
  const s4 = (level: number) => runs.find((r) => r.scenario === 'S4' && r.level === level);
  const at5k = s4(5_000);
  const topLevel = Math.max(0, ...runs.filter((r) => r.scenario === 'S4').map((r) => r.level));
  const at10k = topLevel >= TEN_K_AT_LEAST ? s4(topLevel) : undefined;
  const verdict = (value: number | undefined, test: (v: number) => boolean) =>
    value === undefined ? undefined : test(value);
  return [
    {
      name: 'S4 p99 added inter-chunk gap at 5k streams < 5 ms',
      measured: at5k?.addedGapP99Ms === undefined ? 'not run' : `${at5k.addedGapP99Ms.toFixed(1)} ms`,
      met: verdict(at5k?.addedGapP99Ms, (v) => v < 5),
    },
    {
      name: "S4 RSS per open stream at 5k streams <= 1.5 x S2's",
      measured: at5k?.rssToS2 === undefined ? 'not run' : `${at5k.rssToS2.toFixed(2)} x S2`,
      met: verdict(at5k?.rssToS2, (v) => v <= 1.5),
    },
    {
      name: `S4 streams lost at 10k streams = 0${at10k === undefined || at10k.level === 10_000 ? '' : ` (run at ${at10k.level})`}`,
      measured: at10k === undefined ? 'not run' : String(at10k.lost),
      met: verdict(at10k?.lost, (v) => v === 0),
    },
  ];
}

const pct = (share: number) => `${(share * 100).toFixed(0)}%`;
const times = (value: number | undefined) => (value === undefined ? '-' : value.toFixed(2));

function runTable(runs: readonly RunFigures[], analysis: Analysis): string {
  const header = [
    'level',
    'scenario',
    'ok',
    'lost',
    'late',
    'gap p50 ms',
    'gap p99 ms',
    '+p99 vs S0',
    '1st p99 ms',
    'open',
    'RSS idle MiB',
    'RSS open MiB',
    'KiB/stream',
    'xS2',
    'xS1',
    'CPU ms/1k chunks',
    'xS2',
    'xS1',
    'server CPU',
    'mock CPU',
    'gen CPU',
    'delivered',
    'drops',
  ];
  const rows = runs.map((run) => {
    const a = analysis.runs.find((r) => r.scenario === run.scenario && r.level === run.level)!;
    return [
      String(run.level),
      run.scenario,
      String(run.ok),
      String(run.lost),
      String(run.late),
      fmt(run.gapP50Ms, 1),
      fmt(run.gapP99Ms, 1),
      fmt(a.addedGapP99Ms, 1),
      fmt(run.firstChunkP99Ms, 0),
      String(run.openInPlateau),
      fmt(run.idleRssMiB, 0),
      fmt(run.plateauRssMiB, 0),
      fmt(run.rssPerStreamKiB, 1),
      times(a.rssToS2),
      times(a.rssToS1),
      fmt(run.cpuMsPer1kChunks, 1),
      times(a.cpuToS2),
      times(a.cpuToS1),
      pct(run.serverCpuShare),
      pct(run.mockCpuShare),
      pct(run.generatorCpuShare),
      pct(run.deliveredShare),
      String(run.listenOverflows),
    ];
  });
  return table(header, rows);
}

const SCENARIO_NAMES: Record<StreamScenario, string> = {
  S0: 'S0 mock directly',
  S1: 'S1 node:http pipe',
  S2: 'S2 Express + http-proxy-middleware',
  S4: 'S4 llmux full preset',
  PK: 'PK Portkey gateway',
};

export function report(
  header: ReportHeader,
  settings: StreamSettings,
  runs: readonly RunFigures[],
  skipped: Skipped | undefined,
): { text: string; analysis: Analysis } {
  const sorted = [...runs].sort(
    (a, b) =>
      a.level - b.level || settings.scenarios.indexOf(a.scenario) - settings.scenarios.indexOf(b.scenario),
  );
  const analysis = analyse(settings, sorted);
  const paceMs = sorted[0]?.paceMs ?? Math.round(1_000 / settings.chunksPerSecond);
  const behind = settings.scenarios
    .map((s) => {
      const level = analysis.firstBehind[s];
      return `${s} ${level === null || level === undefined ? `never (up to ${Math.max(...settings.levels)})` : `at ${level}`}`;
    })
    .join('; ');
  const failures = sorted
    .filter((r) => r.failures.length > 0)
    .map((r) => `  ${r.scenario} @${r.level}: ${JSON.stringify(r.outcomes)}; first: ${r.failures[0]}`);
  const lines = [
    `llmux many-stream benchmark, ${header.date}`,
    `command: ${header.command}`,
    `machine: ${header.machine}; load average (1/5/15 min) ${header.loadAverage.slice(0, 3).join(' / ')} at the start, ` +
      `${header.loadAverage.slice(3).join(' / ')} at the end (other work on the machine included)`,
    `pinning: ${header.pinning}; open-file limit of every child ${header.fileLimit}`,
    `streams: ${Math.round(settings.chunksPerSecond * settings.durationS)} content chunks each, the mock waiting ${paceMs} ms ` +
      `before each (chunkDelayMs; a timer, so about ${paceMs + 1} ms apart), opened at ${settings.rampPerSecond}/s; ` +
      `up to ${settings.streamsPerClient} streams per generator process (undici Pool, one connection per stream)`,
    `scenarios: ${settings.scenarios.map((s) => SCENARIO_NAMES[s]).join('; ')}` +
      (header.portkeyVersion === undefined ? '' : ` (@portkey-ai/gateway ${header.portkeyVersion})`),
    'Every figure shares 2 cores among the server, the mock and the generators: server CPU, mock CPU and gen CPU ' +
      'are shares of one core while every stream was open (the window RSS and CPU are read in).',
    "+p99 vs S0 = p99 of the gaps between content chunks as the client read them, minus S0's at the same level " +
      '(same mock, same generators, no relay). open = streams flowing in the window RSS and CPU are read in (it ' +
      'opens once every stream flows). KiB/stream = (median RSS in that window - idle RSS after warm-up and a GC) ' +
      "/ open; for S0 it is the mock's. CPU ms/1k chunks = server CPU time per 1,000 chunks delivered in that " +
      'window. delivered = chunks delivered / chunks the pace offers the open streams in that window. drops = ' +
      'handshakes the kernel dropped during the run because an accept queue was full (any process on the machine).',
    '',
    runTable(sorted, analysis),
    '',
    `falls behind (added gap p99 > ${settings.behindMs} ms, for S0 its own gap p99 > pace + ${settings.behindMs} ms, or a stream lost or late): ${behind}`,
    ...(skipped === undefined || skipped.levels.length === 0 ? [] : [skippedLine(skipped)]),
    ...(failures.length === 0
      ? ['every stream of every run ended complete, in order, with [DONE]']
      : ['failures:', ...failures]),
    '',
    ...analysis.targets.map(
      (t) => `target: ${t.name}: ${t.measured} ${t.met === undefined ? 'NOT RUN' : t.met ? 'MET' : 'MISSED'}`,
    ),
  ];
  return { text: lines.join('\n'), analysis };
}

const COLORS: Record<StreamScenario, string> = {
  S0: '#7f7f7f',
  S1: '#1f77b4',
  S2: '#ff7f0e',
  S4: '#2ca02c',
  PK: '#9467bd',
};

function seriesOf(
  settings: StreamSettings,
  analysis: Analysis,
  pick: (r: RunAnalysis) => number | undefined,
  include: (s: StreamScenario) => boolean,
): PlotSeries[] {
  return settings.scenarios.filter(include).map((scenario) => {
    const points = analysis.runs
      .filter((r) => r.scenario === scenario)
      .sort((a, b) => a.level - b.level)
      .flatMap((r) => {
        const y = pick(r);
        return y === undefined || !Number.isFinite(y) ? [] : [[r.level, y] as const];
      });
    return {
      name: SCENARIO_NAMES[scenario],
      color: COLORS[scenario],
      // A single level (the others skipped) is a point: a line through one point draws nothing.
      style: points.length === 1 ? ('points' as const) : ('line' as const),
      dash: scenario === 'S0' ? '6 4' : undefined,
      points,
    };
  });
}

function subtitle(date: string, settings: StreamSettings): string {
  return (
    `${date.slice(0, 10)}, npm run bench:streams: ${settings.chunksPerSecond} chunks/s per stream for ${settings.durationS} s; ` +
    '2 cores shared by server, mock and load generators'
  );
}

/** RSS per open stream against concurrency. */
export function rssPlot(date: string, settings: StreamSettings, analysis: Analysis): string {
  return svgLineChart({
    title: 'Server RSS per open stream',
    subtitle: subtitle(date, settings),
    xLabel: 'concurrent streams',
    yLabel: 'KiB per open stream (RSS with every stream open - idle RSS)',
    series: seriesOf(
      settings,
      analysis,
      (r) => r.rssPerStreamKiB,
      () => true,
    ).map((s) => (s.name.startsWith('S0') ? { ...s, name: 'S0 the mock itself' } : s)),
  });
}

/** p99 added inter-chunk gap against concurrency, with the issue's 5 ms line. */
export function gapPlot(date: string, settings: StreamSettings, analysis: Analysis): string {
  const levels = settings.levels;
  const relays = seriesOf(
    settings,
    analysis,
    (r) => r.addedGapP99Ms,
    (s) => s !== 'S0',
  );
  const own = seriesOf(
    settings,
    analysis,
    (r) => r.latenessP99Ms,
    (s) => s === 'S0',
  ).map((s) => ({
    ...s,
    name: 'S0: gap p99 - pace (mock and generators alone)',
  }));
  const limit: PlotSeries = {
    name: `${settings.behindMs} ms`,
    color: '#d62728',
    dash: '2 4',
    points: [
      [0, settings.behindMs],
      [Math.max(...levels), settings.behindMs],
    ],
  };
  return svgLineChart({
    title: 'p99 added gap between chunks',
    subtitle: subtitle(date, settings),
    xLabel: 'concurrent streams',
    yLabel: 'ms (client-read gap p99 - S0 gap p99)',
    series: [...relays, ...own, limit],
  });
}
