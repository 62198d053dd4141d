// The relay benchmark's load generator: one-in-flight probes (hrtime per request, time to first
// chunk and gap between chunks for SSE) and closed-loop throughput at N connections. Every answer
// is checked: a non-200 or an incomplete stream throws, which fails the run.
import type { Pool } from 'undici';
import { BENCH_KEY } from './relay-config.js';

const PATH = '/v1/chat/completions';
const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${BENCH_KEY}` };
const CONTENT_FIELD = '"content":"';
const DONE_FRAME = 'data: [DONE]\n\n';

/** One kind of request: its body and, for a stream, how many content chunks must arrive. */
export interface Workload {
  readonly name: string;
  readonly body: string;
  /** Content chunks of the streamed answer; 0 for a JSON answer. */
  readonly chunks: number;
}

/** What one request took, in µs from sending it. */
interface Timing {
  totalUs: number;
  /** First body bytes. */
  firstUs: number;
  /** Last body bytes. */
  lastUs: number;
}

function elapsedUs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1_000;
}

function countContentFrames(text: string): number {
  let count = 0;
  for (let at = text.indexOf(CONTENT_FIELD); at !== -1; at = text.indexOf(CONTENT_FIELD, at + 1)) count++;
  return count;
}

function check(workload: Workload, status: number, text: string): void {
  if (status !== 200) throw new Error(`${workload.name}: status ${status}: ${text.slice(0, 300)}`);
  if (workload.chunks === 0) {
    if (!text.startsWith('{')) throw new Error(`${workload.name}: not a JSON answer: ${text.slice(0, 200)}`);
    return;
  }
  const frames = countContentFrames(text);
  if (frames !== workload.chunks || !text.endsWith(DONE_FRAME)) {
    throw new Error(
      `${workload.name}: incomplete stream: ${frames}/${workload.chunks} content chunks, ` +
        `[DONE] ${text.endsWith(DONE_FRAME)}`,
    );
  }
}

/** Sends one request, reads and checks the whole answer. */
async function send(pool: Pool, workload: Workload): Promise<Timing> {
  const start = process.hrtime.bigint();
  const res = await pool.request({ method: 'POST', path: PATH, headers: HEADERS, body: workload.body });
  let text = '';
  let firstUs = 0;
  for await (const chunk of res.body) {
    if (firstUs === 0) firstUs = elapsedUs(start);
    text += String(chunk);
  }
  const lastUs = elapsedUs(start);
  check(workload, res.statusCode, text);
  return { totalUs: lastUs, firstUs, lastUs };
}

/** Figures of a probe: requests one at a time. */
export interface ProbeFigures {
  samples: number;
  p50Us: number;
  p99Us: number;
  /** SSE: time to the first body bytes, p50. */
  firstChunkP50Us?: number;
  /** SSE (2 chunks or more): p50 over requests of the mean gap between chunks, (last - first) / (chunks - 1). */
  chunkGapP50Us?: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function sortedPercentile(values: number[], p: number): number {
  return percentile(
    values.sort((a, b) => a - b),
    p,
  );
}

/** Up to `count` requests one at a time, stopping early after `maxMs` (at least 50 requests). */
export async function probe(
  pool: Pool,
  workload: Workload,
  count: number,
  maxMs: number,
): Promise<ProbeFigures> {
  const totals: number[] = [];
  const firsts: number[] = [];
  const gaps: number[] = [];
  const end = performance.now() + maxMs;
  while (totals.length < count && (totals.length < 50 || performance.now() < end)) {
    const timing = await send(pool, workload);
    totals.push(timing.totalUs);
    firsts.push(timing.firstUs);
    if (workload.chunks > 1) gaps.push((timing.lastUs - timing.firstUs) / (workload.chunks - 1));
  }
  const figures: ProbeFigures = {
    samples: totals.length,
    p50Us: sortedPercentile(totals, 50),
    p99Us: sortedPercentile(totals, 99),
  };
  if (workload.chunks > 0) figures.firstChunkP50Us = sortedPercentile(firsts, 50);
  if (gaps.length > 0) figures.chunkGapP50Us = sortedPercentile(gaps, 50);
  return figures;
}

/** Figures of a closed loop at N connections. */
export interface ThroughputFigures {
  connections: number;
  requests: number;
  rps: number;
  /** CPU of the load generator (this process) over the window, as a share of one core. */
  loadGeneratorCpuShare: number;
}

/** Sends `requests` requests over `connections` workers (a warm-up by count, not by time). */
export async function sendMany(
  pool: Pool,
  workload: Workload,
  connections: number,
  requests: number,
): Promise<void> {
  let left = requests;
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--;
      await send(pool, workload);
    }
  };
  await Promise.all(Array.from({ length: Math.min(connections, requests) }, worker));
}

/** `connections` workers, each sending its next request when the last answer was read, for `durationMs`. */
export async function throughput(
  pool: Pool,
  workload: Workload,
  connections: number,
  durationMs: number,
): Promise<ThroughputFigures> {
  let requests = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      await send(pool, workload);
      requests++;
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return {
    connections,
    requests,
    rps: requests / (wallMs / 1_000),
    loadGeneratorCpuShare: (used.user + used.system) / 1_000 / wallMs,
  };
}
