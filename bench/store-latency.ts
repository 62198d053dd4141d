// Added latency of the Redis key store over the memory store on keyAuth's per-request path, and
// against one bare Redis round trip (PING) on the same connection kind, measured side by side,
// interleaved. What a request waits for before it is relayed: `lookupKey` (the key and the
// address's failed-auth state, one script) and `admit` (one script); `settle` runs after the
// response and is reported apart.
// Run: npm run bench:stores  (needs Redis on 127.0.0.1:6379 or REDIS_URL)
import { hashApiKey, MemoryKeyStore, type KeyStore } from '../lib/index.js';
import { Redis } from 'ioredis';
import { RedisKeyStore } from '../lib/redis.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5_000);
const WARM_UP = 500;
const SECRET = 'sk-llmux-bench-0001';
const URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** ms spent before the relay (lookup + admission), then on the settlement. */
async function oneRequest(store: KeyStore, keyId: string, now: number): Promise<[number, number]> {
  const started = process.hrtime.bigint();
  const { key } = await store.lookupKey(hashApiKey(SECRET), '127.0.0.1', now);
  if (key === undefined) throw new Error('key not found');
  const admission = await store.admit({
    keyId,
    model: 'gpt-4o-mini',
    estimatedCostUsd: 0.001,
    estimatedTokens: 100,
    nowMs: now,
  });
  if (!admission.ok) throw new Error(`refused: ${admission.reason}`);
  const admitted = process.hrtime.bigint();
  await store.settle(admission.reservationId, {
    model: 'gpt-4o-mini',
    costUsd: 0.0005,
    promptTokens: 10,
    completionTokens: 20,
    nowMs: now,
  });
  const settled = process.hrtime.bigint();
  return [Number(admitted - started) / 1_000, Number(settled - admitted) / 1_000];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]): { p50Us: number; p99Us: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50Us: Math.round(percentile(sorted, 50)), p99Us: Math.round(percentile(sorted, 99)) };
}

async function main(): Promise<void> {
  const prefix = `llmux-bench:${process.pid}:`;
  const stores: [string, KeyStore][] = [
    ['memory', new MemoryKeyStore()],
    ['redis', new RedisKeyStore({ url: URL, prefix })],
  ];
  const keyIds: string[] = [];
  for (const [, store] of stores) {
    keyIds.push(
      (await store.createKey({ name: 'bench', hash: hashApiKey(SECRET), prefix: 'sk-llmux-benc' })).id,
    );
  }
  const ping = new Redis(URL);
  const pingSamples: number[] = [];
  const before: number[][] = stores.map(() => []);
  const after: number[][] = stores.map(() => []);
  const now = Date.now();
  for (let round = -WARM_UP; round < ROUNDS; round++) {
    const started = process.hrtime.bigint();
    await ping.ping();
    if (round >= 0) pingSamples.push(Number(process.hrtime.bigint() - started) / 1_000);
    for (let i = 0; i < stores.length; i++) {
      const [admitUs, settleUs] = await oneRequest(stores[i]![1], keyIds[i]!, now);
      if (round < 0) continue;
      before[i]!.push(admitUs);
      after[i]!.push(settleUs);
    }
  }
  const roundTrip = summary(pingSamples);
  const rows = stores.map(([name], i) => ({
    store: name,
    beforeRelay: summary(before[i]!),
    settlement: summary(after[i]!),
  }));
  const redis = rows[1]!.beforeRelay;
  process.stdout.write(
    `${JSON.stringify(
      {
        rounds: ROUNDS,
        redisRoundTrip: roundTrip,
        rows,
        addedP50Us: redis.p50Us - rows[0]!.beforeRelay.p50Us,
        redisPathOverRoundTripP50: Number((redis.p50Us / roundTrip.p50Us).toFixed(2)),
        note: 'one process, loopback Redis, 2 cores shared by client and Redis (no pinning)',
      },
      null,
      2,
    )}\n`,
  );
  ping.disconnect();
  await Promise.all(stores.map(([, store]) => store.close()));
  // Leave nothing behind in the shared Redis.
  const cleaner = new Redis(URL);
  let cursor = '0';
  do {
    const [next, keys] = await cleaner.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await cleaner.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  cleaner.disconnect();
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
