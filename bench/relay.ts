// The relay benchmark: the shipped mock upstream (S0) and the relays in front of it (S1 node:http
// pipe, S1u undici Pool pipe, S1e that pipe as an Express route, S2 Express + http-proxy-middleware, S3 llmux streamRelay, S4 the full
// llmux preset, and S4's retry and gate-saturation variants), each in its own pinned child process,
// measured side by side: warm-up first, then rounds in which the scenarios of each workload take
// turns; figures are medians over rounds. Any non-200 answer or incomplete stream fails the run.
// Run: npm run bench   (BENCH_QUICK=1 for a smoke run; writes bench/results/latest.json)
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { probe, sendMany, throughput, type Workload } from './load.js';
import { pinProcesses, ServerProcess, serverFlags, stopServers, type Pinning } from './relay-children.js';
import type { WindowStats } from './relay-config.js';
import { Figures, summarise, type Measurement, type StepRecord, type Summary } from './relay-figures.js';
import {
  HEADLINE_CONNECTIONS,
  plan,
  readSettings,
  type PlanItem,
  type Scenario,
  type Settings,
} from './relay-plan.js';
import {
  expressContext,
  jsonTable,
  ratioTable,
  targetLines,
  targets,
  variantTable,
  workloadTable,
} from './relay-report.js';
import { armWatchdog, runMain } from './run.js';
import { RETRY_OPTIONS, SATURATED_GATE_MAX } from './scenarios.js';

const MAX_CONNECTIONS = 128;
const WARM_UP_CONNECTIONS = 8;

/** The processes and client pools of a run. */
interface Rig {
  settings: Settings;
  mock: ServerProcess;
  servers: Map<Scenario, ServerProcess>;
  pools: Map<Scenario, Pool>;
}

async function startRig(settings: Settings, pinning: Pinning, scenarios: readonly Scenario[]): Promise<Rig> {
  const mock = await ServerProcess.start('mock', ['mock'], pinning.mockCore);
  const servers = new Map<Scenario, ServerProcess>([['S0', mock]]);
  const relays = scenarios.filter((s) => s !== 'S0');
  const started = await Promise.all(
    relays.map((s) => ServerProcess.start(s, [s, mock.url], pinning.relayCore)),
  );
  relays.forEach((s, i) => servers.set(s, started[i]!));
  const pools = new Map<Scenario, Pool>();
  for (const [scenario, server] of servers) {
    pools.set(scenario, new Pool(server.url, { connections: MAX_CONNECTIONS, keepAliveTimeout: 60_000 }));
  }
  return { settings, mock, servers, pools };
}

/** Runs `load` inside a stats window of the scenario's server and of the mock. */
async function windowed<T>(
  rig: Rig,
  scenario: Scenario,
  load: () => Promise<T>,
): Promise<{ value: T; server: WindowStats; mock: WindowStats }> {
  const server = rig.servers.get(scenario)!;
  const processes = server === rig.mock ? [server] : [server, rig.mock];
  await Promise.all(processes.map((p) => p.startWindow()));
  const value = await load();
  const [serverStats, mockStats] = await Promise.all(processes.map((p) => p.endWindow()));
  return { value, server: serverStats!, mock: mockStats ?? serverStats! };
}

/** Fails the run unless the server saw every request and the mock the expected attempts. */
function verify(
  item: PlanItem,
  scenario: Scenario,
  requests: number,
  server: WindowStats,
  mock: WindowStats,
): void {
  const what = `${item.workload.name} on ${scenario}`;
  const attempts = requests * item.attemptsPerRequest;
  if (server !== mock && server.requests !== requests) {
    throw new Error(`${what}: the server saw ${server.requests} requests, the client sent ${requests}`);
  }
  if (mock.requests !== attempts)
    throw new Error(`${what}: the mock saw ${mock.requests} attempts, expected ${attempts}`);
  const retries = item.attemptsPerRequest - 1;
  if (mock.retryFailures !== requests * retries || mock.retrySuccesses !== requests * retries) {
    throw new Error(
      `${what}: the mock failed ${mock.retryFailures} and then answered ${mock.retrySuccesses} retried attempts, ` +
        `expected ${requests * retries} each`,
    );
  }
}

async function throughputStep(
  rig: Rig,
  item: PlanItem,
  scenario: Scenario,
  connections: number,
): Promise<StepRecord> {
  const pool = rig.pools.get(scenario)!;
  const { value, server, mock } = await windowed(rig, scenario, () =>
    throughput(pool, item.workload, connections, rig.settings.throughputMs),
  );
  verify(item, scenario, value.requests, server, mock);
  return {
    ...value,
    cpuUsPerRequest: server.cpuUs / value.requests,
    serverCpuShare: server.cpuUs / server.wallUs,
    eldP99Ms: server.eldP99Ms,
    upstreamAttemptsPerRequest: mock.requests / value.requests,
    server,
    ...(server === mock ? {} : { mock }),
  };
}

async function measure(rig: Rig, item: PlanItem, scenario: Scenario, round: number): Promise<Measurement> {
  const { settings } = rig;
  const pool = rig.pools.get(scenario)!;
  await throughput(pool, item.workload, WARM_UP_CONNECTIONS, settings.roundWarmUpMs);
  const measurement: Measurement = { round, workload: item.workload.name, scenario, steps: [] };
  if (item.probe) {
    const count = item.workload.chunks > 0 ? Math.ceil(settings.probeRequests / 2) : settings.probeRequests;
    const { value, server, mock } = await windowed(rig, scenario, () =>
      probe(pool, item.workload, count, settings.probeMaxMs),
    );
    verify(item, scenario, value.samples, server, mock);
    measurement.probe = value;
  }
  for (const connections of item.connections) {
    measurement.steps.push(await throughputStep(rig, item, scenario, connections));
  }
  return measurement;
}

function progress(m: Measurement): void {
  const steps = m.steps.map((s) => `${s.rps.toFixed(0)} req/s @${s.connections}`).join(', ');
  const p = m.probe;
  const sse = p?.firstChunkP50Us === undefined ? '' : `, 1st chunk ${p.firstChunkP50Us.toFixed(0)} µs`;
  const latency = p === undefined ? '' : `p50 ${p.p50Us.toFixed(0)} µs, p99 ${p.p99Us.toFixed(0)} µs${sse}, `;
  process.stderr.write(`round ${m.round} ${m.workload} ${m.scenario}: ${latency}${steps}\n`);
}

/** The scenarios of an item, rotated by round so none always runs first. */
function turnOrder(scenarios: readonly Scenario[], round: number): Scenario[] {
  const shift = (round - 1) % scenarios.length;
  return [...scenarios.slice(shift), ...scenarios.slice(0, shift)];
}

/** Warms every server up with `warmUpRequests` requests, shared among its workloads (at least 200 each). */
async function warmUp(rig: Rig, items: readonly PlanItem[]): Promise<void> {
  process.stderr.write(`warm-up: ${rig.settings.warmUpRequests} requests per server\n`);
  for (const [scenario, pool] of rig.pools) {
    const workloads = items.filter((i) => i.scenarios.includes(scenario)).map((i) => i.workload);
    const each = Math.max(200, Math.ceil(rig.settings.warmUpRequests / workloads.length));
    for (const workload of workloads) await sendMany(pool, workload, WARM_UP_CONNECTIONS, each);
  }
}

async function runRounds(rig: Rig, items: readonly PlanItem[]): Promise<Measurement[]> {
  const measurements: Measurement[] = [];
  for (let round = 1; round <= rig.settings.rounds; round++) {
    for (const item of items) {
      for (const scenario of turnOrder(item.scenarios, round)) {
        const m = await measure(rig, item, scenario, round);
        progress(m);
        measurements.push(m);
      }
    }
  }
  return measurements;
}

function summariesOf(items: readonly PlanItem[], figures: Figures): Summary[] {
  return items.flatMap((item) =>
    item.scenarios.map((scenario) =>
      summarise(
        figures,
        item.workload.name,
        scenario,
        item.connections,
        item.attemptsPerRequest > 1 ? 'json' : undefined,
      ),
    ),
  );
}

function commandLine(): string {
  const knobs = Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_'))
    .map(([name, value]) => `${name}=${value}`);
  const base = process.env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'tsx bench/relay.ts';
  return [...knobs, base].join(' ');
}

function describeWorkload(w: Workload) {
  return { name: w.name, requestBytes: Buffer.byteLength(w.body), sseChunks: w.chunks };
}

const RETRY_NOTE =
  `S4r: retry(${JSON.stringify(RETRY_OPTIONS)}); the mock fails each first attempt (429 with Retry-After: 0, or 500), ` +
  'so every request includes one extra upstream round trip and one zero-delay backoff timer (about 1 ms in Node). ' +
  'With the default baseDelayMs 250 a retry would add a full-jitter wait of U(0, 250) ms instead.';
const GATE_NOTE =
  `S4g: the full preset with gate { max: ${SATURATED_GATE_MAX} } (default queue 2 x max = ${2 * SATURATED_GATE_MAX}, ` +
  `queue timeout 30 s) offered ${HEADLINE_CONNECTIONS} connections: ${HEADLINE_CONNECTIONS - SATURATED_GATE_MAX} wait at any time, none may be refused.`;

function header(date: Date, pinning: Pinning, settings: Settings): string {
  const cpus = os.cpus();
  return [
    `llmux relay benchmark, ${date.toISOString()}`,
    `command: ${commandLine()}`,
    `machine: ${cpus.length} x ${cpus[0]?.model ?? 'unknown cpu'}, ${os.platform()} ${os.release()}, node ${process.version}`,
    `pinning: ${pinning.note}; every leg on 127.0.0.1 with keep-alive; server flags ${serverFlags().join(' ')}`,
    `settings: ${settings.rounds} round(s), medians across rounds; throughput steps ${settings.throughputMs} ms, ` +
      `probes up to ${settings.probeRequests} requests / ${settings.probeMaxMs} ms, warm-up ${settings.warmUpRequests} requests per server and ${settings.roundWarmUpMs} ms before each measurement`,
    'added = scenario minus S0 in the same round; xS1u, xS2 = throughput ratio in the same round; ' +
      'CPU µs/req, srv CPU and ELD p99 (event-loop delay beyond the 10 ms sampler) are the server under test at 32 connections; ' +
      'gen CPU = the load generator.',
  ].join('\n');
}

function report(rig: Rig, items: readonly PlanItem[], summaries: Summary[], pinning: Pinning, date: Date) {
  const of = (workload: string, scenario: Scenario) =>
    summaries.find((s) => s.workload === workload && s.scenario === scenario);
  const jsonItem = items[0]!;
  const json = jsonItem.scenarios.map((s) => of('json', s)!);
  const sseWorkloads = items.filter((i) => i.workload.chunks > 0).map((i) => i.workload.name);
  const isVariant = (s: Summary) => s.scenario === 'S4r' || s.scenario === 'S4g';
  const others = summaries.filter((s) => s.workload !== 'json' && !isVariant(s));
  const variants = summaries.filter(isVariant);
  const list = targets(of, sseWorkloads);
  const text = [
    header(date, pinning, rig.settings),
    `\nJSON, ${Buffer.byteLength(jsonItem.workload.body)} B request, every scenario`,
    jsonTable(json, jsonItem.connections),
    '\nThroughput ratio to S1u / to S2, json',
    ratioTable(json, jsonItem.connections),
    '\nRequest bodies and SSE (one in flight; req/s at 32 connections); every chunk and [DONE] checked on every answer',
    workloadTable(others),
    '\nS4 with retries and with a saturated gate',
    variantTable(of('json', 'S4'), variants),
    RETRY_NOTE,
    GATE_NOTE,
    '',
    targetLines(list),
    expressContext(of),
  ].join('\n');
  return { text, targets: list };
}

async function main(): Promise<void> {
  const started = Date.now();
  const settings = readSettings();
  armWatchdog(settings.watchdogS);
  const pinning = pinProcesses();
  const items = plan(settings);
  const scenarios = [...new Set(items.flatMap((i) => i.scenarios))];
  const rig = await startRig(settings, pinning, scenarios);
  await warmUp(rig, items);
  const measurements = await runRounds(rig, items);
  await Promise.all([...rig.pools.values()].map((pool) => pool.close()));
  await stopServers();

  const date = new Date();
  const summaries = summariesOf(items, new Figures(measurements));
  const { text, targets: list } = report(rig, items, summaries, pinning, date);
  const durationS = (Date.now() - started) / 1_000;
  process.stdout.write(`\n${text}\n`);
  const result = {
    date: date.toISOString(),
    command: commandLine(),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      platform: `${os.platform()} ${os.release()}`,
    },
    node: process.version,
    pinning,
    serverFlags: serverFlags(),
    settings,
    notes: { retry: RETRY_NOTE, gate: GATE_NOTE },
    workloads: items.map((i) => ({
      ...describeWorkload(i.workload),
      scenarios: i.scenarios,
      connections: i.connections,
    })),
    targets: list,
    summaries,
    measurements,
    durationS,
  };
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}latest.json`, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`\nwrote bench/results/latest.json; the run took ${durationS.toFixed(0)} s\n`);
}

runMain(main);
