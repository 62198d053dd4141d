// Added latency of the Redis key store over the memory store, on keyAuth's per-request path
// (failed-auth state, key lookup, admission, settlement), measured side by side, interleaved.
// Run: npm run bench:stores  (needs Redis on 127.0.0.1:6379 or REDIS_URL)
import { hashApiKey, MemoryKeyStore, type KeyStore } from '../lib/index.js';
import { Redis } from 'ioredis';
import { RedisKeyStore } from '../lib/redis.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5_000);
const SECRET = 'sk-llmux-bench-0001';

async function oneRequest(store: KeyStore, keyId: string, now: number): Promise<void> {
  await store.authFailureState('127.0.0.1', now);
  await store.findKeyByHash(hashApiKey(SECRET));
  const admission = await store.admit({
    keyId,
    model: 'gpt-4o-mini',
    estimatedCostUsd: 0.001,
    estimatedTokens: 100,
    nowMs: now,
  });
  if (!admission.ok) throw new Error(`refused: ${admission.reason}`);
  await store.settle(admission.reservationId, {
    model: 'gpt-4o-mini',
    costUsd: 0.0005,
    promptTokens: 10,
    completionTokens: 20,
    nowMs: now,
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const prefix = `llmux-bench:${process.pid}:`;
  const stores: [string, KeyStore][] = [
    ['memory', new MemoryKeyStore()],
    ['redis', new RedisKeyStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix })],
  ];
  const keyIds: string[] = [];
  for (const [, store] of stores) {
    keyIds.push(
      (await store.createKey({ name: 'bench', hash: hashApiKey(SECRET), prefix: 'sk-llmux-benc' })).id,
    );
  }
  const samples: number[][] = stores.map(() => []);
  const now = Date.now();
  for (let round = -500; round < ROUNDS; round++) {
    for (let i = 0; i < stores.length; i++) {
      const started = process.hrtime.bigint();
      await oneRequest(stores[i]![1], keyIds[i]!, now);
      if (round >= 0) samples[i]!.push(Number(process.hrtime.bigint() - started) / 1_000);
    }
  }
  const rows = stores.map(([name], i) => {
    const sorted = samples[i]!.sort((a, b) => a - b);
    return { store: name, p50Us: percentile(sorted, 50), p99Us: percentile(sorted, 99) };
  });
  const added = rows[1]!.p50Us - rows[0]!.p50Us;
  process.stdout.write(
    `${JSON.stringify({ rounds: ROUNDS, rows, addedP50Us: added, note: 'one process, loopback Redis, 2 cores shared by client and Redis' }, null, 2)}\n`,
  );
  await Promise.all(stores.map(([, store]) => store.close()));
  // Leave nothing behind in the shared Redis.
  const cleaner = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
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
