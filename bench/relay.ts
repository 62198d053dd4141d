// The relay benchmark: the shipped mock upstream (S0) and five relays in front of it (S1 node:http
// pipe, S1u undici Pool pipe, S2 Express + http-proxy-middleware, S3 llmux streamRelay, S4 the full
// llmux preset), each in its own pinned child process, measured side by side in interleaved rounds.
// Run: npm run bench   (writes bench/results/latest.json)
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { BENCH_KEY, SSE_CHUNKS } from './relay-config.js';

const SCENARIOS = ['S0', 'S1', 'S1u', 'S2', 'S3', 'S4'] as const;
const SSE_SCENARIOS = ['S0', 'S1u', 'S4'] as const;
type Scenario = (typeof SCENARIOS)[number];

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const LATENCY_REQUESTS = Number(process.env.BENCH_LATENCY_REQUESTS ?? 2_000);
const SSE_REQUESTS = Number(process.env.BENCH_SSE_REQUESTS ?? 500);
const WARMUP_MS = 1_000;
const THROUGHPUT_MS = 3_000;
const CONNECTIONS = 32;
const WATCHDOG_MS = 240_000;

const PATH = '/v1/chat/completions';
const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${BENCH_KEY}` };
const messages = [
  { role: 'system', content: 'You are a terse assistant used by a relay benchmark.' },
  {
    role: 'user',
    content: 'Say hello in a few words, then count from one to ten, and end with a short goodbye line.',
  },
  { role: 'user', content: 'Keep the whole answer under sixty tokens.' },
];
const JSON_BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, messages });
const SSE_BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, stream: true, messages });

const children = new Set<ChildProcess>();

function killChildren(): void {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children.clear();
}

/** Whether `taskset` can pin processes here (checked once). */
function detectTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
}

function startServer(
  args: string[],
  core: number | undefined,
): Promise<{ child: ChildProcess; port: number }> {
  const script = fileURLToPath(new URL('./relay-server.ts', import.meta.url));
  const pinned = core !== undefined;
  const child = fork(script, args, {
    execPath: pinned ? 'taskset' : process.execPath,
    execArgv: pinned ? ['-c', String(core), process.execPath, '--import', 'tsx'] : ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${args[0]} did not start in 20 s`)), 20_000);
    child.once('message', (msg: { port: number }) => {
      clearTimeout(timer);
      resolve({ child, port: msg.port });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server ${args[0]} exited with ${code}`));
    });
  });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function post(pool: Pool, body: string): Promise<void> {
  const res = await pool.request({ method: 'POST', path: PATH, headers: HEADERS, body });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${text.slice(0, 200)}`);
}

/** Sequential requests, one in flight: per-request µs, sorted. */
async function latency(pool: Pool, count: number): Promise<number[]> {
  const samples: number[] = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    await post(pool, JSON_BODY);
    samples[i] = Number(process.hrtime.bigint() - start) / 1_000;
  }
  return samples.sort((a, b) => a - b);
}

/** `connections` workers looping for `durationMs`: completed requests per second. */
async function throughput(pool: Pool, connections: number, durationMs: number): Promise<number> {
  let done = 0;
  const end = performance.now() + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      await post(pool, JSON_BODY);
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  return done / ((performance.now() - start) / 1_000);
}

/** Streamed requests one at a time: time to the first body chunk in µs (sorted); checks every chunk arrived. */
async function sseFirstChunk(pool: Pool, count: number): Promise<number[]> {
  const samples: number[] = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    const res = await pool.request({ method: 'POST', path: PATH, headers: HEADERS, body: SSE_BODY });
    let first = 0;
    let text = '';
    for await (const chunk of res.body) {
      if (first === 0) first = Number(process.hrtime.bigint() - start) / 1_000;
      text += String(chunk);
    }
    if (res.statusCode !== 200) throw new Error(`SSE status ${res.statusCode}: ${text.slice(0, 200)}`);
    const content = text.split('"content":"').length - 1;
    if (content < SSE_CHUNKS || !text.includes('data: [DONE]')) {
      throw new Error(
        `SSE stream incomplete: ${content} content chunks, [DONE] ${text.includes('data: [DONE]')}`,
      );
    }
    samples[i] = first;
  }
  return samples.sort((a, b) => a - b);
}

async function warmUp(pool: Pool): Promise<void> {
  await throughput(pool, 8, WARMUP_MS);
}

interface RoundFigures {
  p50: number;
  p99: number;
  rps: number;
  sseP50?: number;
}

interface ScenarioFigures {
  latencyP50Us: number;
  latencyP99Us: number;
  addedP50Us: number;
  addedP99Us: number;
  throughputRps: number;
  sseFirstChunkP50Us: number | undefined;
  sseAddedFirstChunkP50Us: number | undefined;
  rounds: RoundFigures[];
}

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits);
}

async function main(): Promise<void> {
  const started = Date.now();
  const cpus = os.cpus().length;
  const pinning = detectTaskset();
  // Load generator on core 0, relays on core 1; the mock gets core 2 when there is one, else core 0.
  const mockCore = pinning ? (cpus >= 3 ? 2 : 0) : undefined;
  const relayCore = pinning ? 1 : undefined;
  if (pinning) execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });

  const mock = await startServer(['mock'], mockCore);
  const mockUrl = `http://127.0.0.1:${mock.port}`;
  const urls = new Map<Scenario, string>([['S0', mockUrl]]);
  for (const scenario of SCENARIOS) {
    if (scenario === 'S0') continue;
    const server = await startServer([scenario, mockUrl], relayCore);
    urls.set(scenario, `http://127.0.0.1:${server.port}`);
  }
  const pools = new Map<Scenario, Pool>();
  for (const [scenario, url] of urls) {
    pools.set(scenario, new Pool(url, { connections: CONNECTIONS, keepAliveTimeout: 60_000 }));
  }

  const rounds = new Map<Scenario, RoundFigures[]>(SCENARIOS.map((s) => [s, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const scenario of SCENARIOS) {
      const pool = pools.get(scenario)!;
      await warmUp(pool);
      const lat = await latency(pool, LATENCY_REQUESTS);
      const rps = await throughput(pool, CONNECTIONS, THROUGHPUT_MS);
      const figures: RoundFigures = { p50: percentile(lat, 50), p99: percentile(lat, 99), rps };
      if ((SSE_SCENARIOS as readonly string[]).includes(scenario)) {
        figures.sseP50 = percentile(await sseFirstChunk(pool, SSE_REQUESTS), 50);
      }
      rounds.get(scenario)!.push(figures);
      process.stderr.write(
        `round ${round} ${scenario}: p50 ${fmt(figures.p50)} µs, p99 ${fmt(figures.p99)} µs, ` +
          `${fmt(rps)} req/s${figures.sseP50 === undefined ? '' : `, SSE first chunk p50 ${fmt(figures.sseP50)} µs`}\n`,
      );
    }
  }
  await Promise.all([...pools.values()].map((pool) => pool.close()));

  const med = (scenario: Scenario, pick: (f: RoundFigures) => number | undefined): number | undefined => {
    const values = rounds
      .get(scenario)!
      .map(pick)
      .filter((v): v is number => v !== undefined);
    return values.length === 0 ? undefined : median(values);
  };
  const base = {
    p50: med('S0', (f) => f.p50)!,
    p99: med('S0', (f) => f.p99)!,
    sse: med('S0', (f) => f.sseP50)!,
  };
  const summarise = (scenario: Scenario): ScenarioFigures => {
    const p50 = med(scenario, (f) => f.p50)!;
    const p99 = med(scenario, (f) => f.p99)!;
    const sse = med(scenario, (f) => f.sseP50);
    return {
      latencyP50Us: p50,
      latencyP99Us: p99,
      addedP50Us: p50 - base.p50,
      addedP99Us: p99 - base.p99,
      throughputRps: med(scenario, (f) => f.rps)!,
      sseFirstChunkP50Us: sse,
      sseAddedFirstChunkP50Us: sse === undefined ? undefined : sse - base.sse,
      rounds: rounds.get(scenario)!,
    };
  };
  const scenarios = Object.fromEntries(SCENARIOS.map((s) => [s, summarise(s)])) as Record<
    Scenario,
    ScenarioFigures
  >;

  const ratios = {
    throughputS4OverS1u: scenarios.S4.throughputRps / scenarios.S1u.throughputRps,
    throughputS4OverS2: scenarios.S4.throughputRps / scenarios.S2.throughputRps,
    addedP50S4OverS1u: scenarios.S4.addedP50Us / scenarios.S1u.addedP50Us,
  };

  const rows = SCENARIOS.map((scenario) => {
    const s = scenarios[scenario];
    return [
      scenario,
      fmt(s.latencyP50Us),
      fmt(s.latencyP99Us),
      scenario === 'S0' ? '-' : fmt(s.addedP50Us),
      scenario === 'S0' ? '-' : fmt(s.addedP99Us),
      fmt(s.throughputRps),
      fmt(s.sseFirstChunkP50Us),
      scenario === 'S0' ? '-' : fmt(s.sseAddedFirstChunkP50Us),
    ];
  });
  const header = [
    'scenario',
    'p50 µs',
    'p99 µs',
    '+p50 µs',
    '+p99 µs',
    `req/s @${CONNECTIONS}`,
    'SSE 1st µs',
    '+SSE 1st µs',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const table = [line(header), ...rows.map(line)].join('\n');
  const summary =
    `S4/S1u throughput ${ratios.throughputS4OverS1u.toFixed(2)} (target >= 0.8), ` +
    `S4/S2 throughput ${ratios.throughputS4OverS2.toFixed(2)} (target >= 2), ` +
    `S4/S1u added p50 ${ratios.addedP50S4OverS1u.toFixed(2)} (target <= 1.25)`;
  process.stdout.write(`\n${table}\n\n${summary}\n`);

  const result = {
    date: new Date().toISOString(),
    command: 'npm run bench',
    machine: { cpus, model: os.cpus()[0]?.model, platform: `${os.platform()} ${os.release()}` },
    node: process.version,
    pinning: pinning
      ? { used: true, loadGenerator: 0, relay: relayCore, mock: mockCore }
      : { used: false, reason: 'taskset missing or a single core' },
    settings: {
      rounds: ROUNDS,
      latencyRequests: LATENCY_REQUESTS,
      throughputConnections: CONNECTIONS,
      throughputMs: THROUGHPUT_MS,
      warmUpMs: WARMUP_MS,
      sseRequests: SSE_REQUESTS,
      sseChunks: SSE_CHUNKS,
      jsonBodyBytes: Buffer.byteLength(JSON_BODY),
    },
    scenarios,
    ratios,
    durationS: (Date.now() - started) / 1_000,
  };
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}latest.json`, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`wrote bench/results/latest.json in ${result.durationS.toFixed(0)} s\n`);
}

process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killChildren();
    process.exit(130);
  });
}
setTimeout(() => {
  process.stderr.write(`bench: still running after ${WATCHDOG_MS / 1_000} s, giving up\n`);
  process.exit(1);
}, WATCHDOG_MS).unref();

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  },
);
