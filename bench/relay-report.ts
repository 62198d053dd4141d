// The relay benchmark's printed report: the run's header (machine, pinning, date, command), tables
// of the summaries, and one line per target of the issue with its measured ratio and MET/MISSED.
import type { Summary } from './relay-figures.js';
import { HEADLINE_CONNECTIONS, type Scenario } from './relay-plan.js';

/** One target of the issue, checked against this run's figures. */
export interface Target {
  name: string;
  measured: number | undefined;
  comparison: '>=' | '<=' | '<';
  limit: number;
  met: boolean;
}

/** Looks a summary up by workload and scenario. */
export type SummaryOf = (workload: string, scenario: Scenario) => Summary | undefined;

function target(
  name: string,
  measured: number | undefined,
  comparison: Target['comparison'],
  limit: number,
): Target {
  const met =
    measured !== undefined &&
    (comparison === '>=' ? measured >= limit : comparison === '<=' ? measured <= limit : measured < limit);
  return { name, measured, comparison, limit, met };
}

/** The targets, all from this run. */
export function targets(of: SummaryOf, sseWorkloads: readonly string[]): Target[] {
  const s4 = of('json', 'S4');
  const s1u = of('json', 'S1u');
  const s2 = of('json', 'S2');
  const n = HEADLINE_CONNECTIONS;
  const addedRatio = (base: Summary | undefined) =>
    s4?.addedP50Us !== undefined && base?.addedP50Us !== undefined
      ? s4.addedP50Us / base.addedP50Us
      : undefined;
  const sseAdded = sseWorkloads.map((w) => of(w, 'S4')?.addedFirstChunkP50Us);
  const worstSse = sseAdded.every((v) => v !== undefined) ? Math.max(...(sseAdded as number[])) : undefined;
  return [
    // Issue 16: no slower than a bare proxy in the same Express app.
    target(`S4 throughput / S2 throughput (json, ${n} connections)`, s4?.ratioToS2[n], '>=', 1),
    target('S4 added p50 / S2 added p50 (json, one in flight)', addedRatio(s2), '<=', 1),
    // Issue 7 (its "2 x S2" is superseded by the line above).
    target(`S4 throughput / S1u throughput (json, ${n} connections)`, s4?.ratioToS1u[n], '>=', 0.8),
    target('S4 added p50 / S1u added p50 (json, one in flight)', addedRatio(s1u), '<=', 1.25),
    target(
      `S4 added time to first chunk p50, µs (worst of ${sseWorkloads.join(', ')})`,
      worstSse,
      '<',
      1_000,
    ),
  ];
}

export function fmt(value: number | undefined, digits = 0): string {
  return value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits);
}

const pct = (share: number | undefined) => (share === undefined ? '-' : `${(share * 100).toFixed(0)}%`);

/** A plain text table: first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** JSON on every scenario: latency at one in flight, throughput by connections, server cost. */
export function jsonTable(summaries: readonly Summary[], connections: readonly number[]): string {
  const n = HEADLINE_CONNECTIONS;
  const header = [
    'scenario',
    'p50 µs',
    'p99 µs',
    '+p50 µs',
    '+p99 µs',
    ...connections.map((c) => `req/s @${c}`),
    `xS1u @${n}`,
    `xS2 @${n}`,
    'CPU µs/req',
    'srv CPU',
    'ELD p99 ms',
    'gen CPU',
  ];
  const rows = summaries.map((s) => [
    s.scenario,
    fmt(s.p50Us),
    fmt(s.p99Us),
    s.scenario === 'S0' ? '-' : fmt(s.addedP50Us),
    s.scenario === 'S0' ? '-' : fmt(s.addedP99Us),
    ...connections.map((c) => fmt(s.rps[c])),
    fmt(s.ratioToS1u[n], 2),
    fmt(s.ratioToS2[n], 2),
    fmt(s.cpuUsPerRequest),
    pct(s.serverCpuShare),
    fmt(s.eldP99Ms, 1),
    pct(s.loadGeneratorCpuShare),
  ]);
  return table(header, rows);
}

/** Throughput ratios to S1u and S2 at every connection count. */
export function ratioTable(summaries: readonly Summary[], connections: readonly number[]): string {
  const header = ['scenario', ...connections.map((c) => `@${c} xS1u / xS2`)];
  const rows = summaries.map((s) => [
    s.scenario,
    ...connections.map((c) => `${fmt(s.ratioToS1u[c], 2)} / ${fmt(s.ratioToS2[c], 2)}`),
  ]);
  return table(header, rows);
}

/** Bodies and SSE on the subset: latency and first chunk at one in flight, throughput at 32. */
export function workloadTable(summaries: readonly Summary[]): string {
  const n = HEADLINE_CONNECTIONS;
  const header = [
    'workload',
    'scenario',
    'p50 µs',
    '+p50 µs',
    '1st chunk µs',
    '+1st µs',
    'gap µs',
    '+gap µs',
    `req/s @${n}`,
    'xS1u',
    'xS2',
    'CPU µs/req',
    'ELD p99 ms',
  ];
  const rows = summaries.map((s) => {
    const base = s.scenario === 'S0';
    return [
      s.workload,
      s.scenario,
      fmt(s.p50Us),
      base ? '-' : fmt(s.addedP50Us),
      fmt(s.firstChunkP50Us),
      base ? '-' : fmt(s.addedFirstChunkP50Us),
      fmt(s.chunkGapP50Us, 1),
      base ? '-' : fmt(s.addedChunkGapP50Us, 1),
      fmt(s.rps[n]),
      fmt(s.ratioToS1u[n], 2),
      fmt(s.ratioToS2[n], 2),
      fmt(s.cpuUsPerRequest),
      fmt(s.eldP99Ms, 1),
    ];
  });
  return table(header, rows);
}

/** The S4 variants next to S4 on JSON: retries and a saturated gate. */
export function variantTable(s4: Summary | undefined, variants: readonly Summary[]): string {
  const n = HEADLINE_CONNECTIONS;
  const header = [
    'case',
    'p50 µs',
    'p99 µs',
    '+p50 µs vs S0',
    `req/s @${n}`,
    `xS4 @${n}`,
    'upstream tries/req',
    'CPU µs/req',
  ];
  const row = (name: string, s: Summary) => [
    name,
    fmt(s.p50Us),
    fmt(s.p99Us),
    fmt(s.addedP50Us),
    fmt(s.rps[n]),
    s === s4 || s4?.rps[n] === undefined || s.rps[n] === undefined ? '-' : fmt(s.rps[n] / s4.rps[n], 2),
    fmt(s.upstreamAttemptsPerRequest, 2),
    fmt(s.cpuUsPerRequest),
  ];
  const rows = [
    ...(s4 === undefined ? [] : [row('S4 json', s4)]),
    ...variants.map((s) => row(`${s.scenario} ${s.workload}`, s)),
  ];
  return table(header, rows);
}

/**
 * Not a target: how S4 compares with S1e, S1u's pipe inside Express, the floor of any relay an
 * Express app hosts, and what Express itself costs on top of S1u (CPU per request, json @32).
 */
export function expressContext(of: SummaryOf): string {
  const s4 = of('json', 'S4');
  const s1e = of('json', 'S1e');
  const s1u = of('json', 'S1u');
  const n = HEADLINE_CONNECTIONS;
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : a / b;
  const s4OverS1e = ratio(s4?.rps[n], s1e?.rps[n]);
  const s1eOverS1u = ratio(s1e?.rps[n], s1u?.rps[n]);
  const expressCpu =
    s1e?.cpuUsPerRequest === undefined || s1u?.cpuUsPerRequest === undefined
      ? undefined
      : s1e.cpuUsPerRequest - s1u.cpuUsPerRequest;
  return (
    `context (not a target): S4 / S1e throughput (json, ${n} connections) ${fmt(s4OverS1e, 2)}; ` +
    `S1e / S1u ${fmt(s1eOverS1u, 2)}; Express's own CPU per request (S1e - S1u) ${fmt(expressCpu)} µs`
  );
}

export function targetLines(list: readonly Target[]): string {
  return list
    .map(
      (t) =>
        `target: ${t.name} ${t.comparison} ${t.limit}: measured ${fmt(t.measured, t.limit >= 100 ? 0 : 2)} ` +
        `${t.met ? 'MET' : 'MISSED'}`,
    )
    .join('\n');
}
