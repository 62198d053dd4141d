// Memory of a RequestTracker over 1,000,000 records: the heap must stay flat, the ring at its
// capacity. Run: npm run bench:tracker  (GC is forced between samples: node --expose-gc)
import { RequestTracker, type RequestRecord } from '../lib/index.js';

const RECORDS = Number(process.env.BENCH_RECORDS ?? 1_000_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 1_000);
const MODELS = ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small', 'o4-mini'];

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:tracker does)');

function heapMiB(): number {
  gc!();
  return process.memoryUsage().heapUsed / 1_048_576;
}

let now = Date.parse('2026-11-22T00:00:00Z');
const tracker = new RequestTracker({ capacity: CAPACITY, clock: () => now });
const samples: { records: number; heapMiB: number }[] = [{ records: 0, heapMiB: heapMiB() }];
const started = process.hrtime.bigint();
for (let i = 1; i <= RECORDS; i++) {
  now += 7; // ~2 hours of traffic per 1M records, so minute and hour buckets rotate
  const record: RequestRecord = {
    id: `req-${i}`,
    timeMs: now,
    route: '/v1/chat/completions',
    model: MODELS[i % MODELS.length],
    keyId: `key-${i % 50}`,
    teamId: undefined,
    userId: undefined,
    status: i % 50 === 0 ? 502 : 200,
    errorCode: i % 50 === 0 ? 'upstream_error' : undefined,
    stream: i % 2 === 0,
    latencyMs: 20 + (i % 400),
    ttfbMs: 5 + (i % 40),
    promptTokens: 100,
    completionTokens: 50,
    costUsd: 0.0001,
    upstream: 'openai',
    attempts: 1,
  };
  tracker.record(record);
  if (i % (RECORDS / 10) === 0) samples.push({ records: i, heapMiB: heapMiB() });
}
const elapsedNs = Number(process.hrtime.bigint() - started);
const first = samples[1]!.heapMiB;
const last = samples.at(-1)!.heapMiB;
process.stdout.write(
  `${JSON.stringify(
    {
      records: RECORDS,
      capacity: CAPACITY,
      size: tracker.size,
      nsPerRecord: Math.round(elapsedNs / RECORDS),
      heapAfterFirstTenthMiB: Number(first.toFixed(2)),
      heapAtEndMiB: Number(last.toFixed(2)),
      slopeMiBPer100k: Number((((last - first) / (RECORDS * 0.9)) * 100_000).toFixed(4)),
      samples: samples.map((s) => ({ records: s.records, heapMiB: Number(s.heapMiB.toFixed(2)) })),
    },
    null,
    2,
  )}\n`,
);
if (tracker.size !== Math.min(CAPACITY, RECORDS)) process.exit(1);
