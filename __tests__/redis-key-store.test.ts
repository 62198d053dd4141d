// RedisKeyStore against a real Redis (REDIS_URL, default 127.0.0.1:6379): the shared KeyStore
// behaviour suite, then what only a shared store has: instances sharing limits, script reloading,
// an unreachable or silent Redis (fail-closed and fail-open), reservation expiry, and idempotent
// seeding of hashes.
import { afterAll, expect, it, jest } from '@jest/globals';
import { createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { hashApiKey } from '../lib/keys/hash.js';
import { MemoryKeyStore } from '../lib/keys/memory-store.js';
import { RedisKeyStore, type RedisKeyStoreOptions } from '../lib/keys/redis-store.js';
import type { Admission, KeyStore } from '../lib/keys/types.js';
import { fuzzRuns } from './support/fuzz.js';
import { settleOnFakeClock } from './support/http.js';
import { describeKeyStore } from './support/key-store-suite.js';
import { requireRedis } from './support/redis.js';

// First, before any client: one clear failure when Redis is down, or visibly skipped suites
// under LLMUX_SKIP_REDIS=1 (see support/redis.ts).
const redis = await requireRedis();
const { describe } = redis;
const REDIS_URL = redis.url;
/** Every key this file writes is under this prefix; afterAll deletes them. */
const RUN_PREFIX = `llmux-test:${process.pid}:${Date.now()}:`;
const T0 = Date.parse('2026-06-15T12:00:00Z');

const shared = redis.client({ enableOfflineQueue: false, maxRetriesPerRequest: 1 });
let prefixes = 0;
/** A prefix no other store of this run uses: a fresh, empty store. */
const freshPrefix = (): string => `${RUN_PREFIX}${++prefixes}:`;
const opened: KeyStore[] = [];
const clients: Redis[] = [shared];

function open(options: Partial<RedisKeyStoreOptions> = {}): RedisKeyStore {
  const store = new RedisKeyStore(
    options.url === undefined && options.redis === undefined
      ? { redis: shared, prefix: freshPrefix(), ...options }
      : { prefix: freshPrefix(), ...options },
  );
  opened.push(store);
  return store;
}

afterAll(async () => {
  await Promise.all(opened.map((store) => store.close()));
  let cursor = '0';
  do {
    const [next, keys] = await shared.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await shared.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await Promise.all(clients.map((client) => client.quit()));
});

if (!redis.skipped) describeKeyStore('RedisKeyStore', (options) => open(options));

/** Every key name and stored value under `prefix`, as text. */
async function dump(prefix: string): Promise<string> {
  const names = await shared.keys(`${prefix}*`);
  const parts: string[] = [...names];
  for (const name of names) {
    const type = await shared.type(name);
    if (type === 'string') parts.push((await shared.get(name)) ?? '');
    else if (type === 'hash') parts.push(...Object.entries(await shared.hgetall(name)).flat());
    else if (type === 'zset') parts.push(...(await shared.zrange(name, 0, -1)));
    else if (type === 'set') parts.push(...(await shared.smembers(name)));
    else parts.push(`unexpected ${type}`);
  }
  return parts.join('\n');
}

const admitOne = (store: KeyStore, keyId: string, nowMs = T0, estimatedCostUsd = 0): Promise<Admission> =>
  store.admit({ keyId, model: 'gpt-4o', estimatedCostUsd, estimatedTokens: 0, nowMs });

describe('RedisKeyStore across instances', () => {
  it('holds one budget for two instances: 50 parallel admissions split across both admit exactly 10', async () => {
    const prefix = freshPrefix();
    const a = open({ url: REDIS_URL, prefix });
    const b = open({ url: REDIS_URL, prefix });
    const key = await a.createKey({
      name: 'shared',
      hash: hashApiKey('sk-shared'),
      prefix: '',
      budgetUsd: 1,
    });
    const admissions = await Promise.all(
      Array.from({ length: 50 }, (_, i) => admitOne(i % 2 === 0 ? a : b, key.id, T0, 0.1)),
    );
    expect(admissions.filter((admission) => admission.ok)).toHaveLength(10);
    expect((await b.findKeyByHash(hashApiKey('sk-shared')))?.id).toBe(key.id);
  });

  it('reloads its scripts after SCRIPT FLUSH', async () => {
    const store = open();
    const key = await store.createKey({ name: 'k', hash: hashApiKey('sk-flush'), prefix: '', rpm: 10 });
    expect((await admitOne(store, key.id)).ok).toBe(true);
    await shared.script('FLUSH');
    expect(await admitOne(store, key.id)).toMatchObject({ ok: true, rateLimit: { limit: 10, remaining: 8 } });
  });

  it('frees the slot of a reservation nobody settles once reservationTtlMs has passed, charging its reservation until a settlement replaces it', async () => {
    const store = open({ reservationTtlMs: 60_000 });
    const key = await store.createKey({
      name: 'k',
      hash: hashApiKey('sk-lost'),
      prefix: '',
      maxParallel: 1,
      budgetUsd: 1,
    });
    const lost = await admitOne(store, key.id, T0, 1);
    expect(lost.ok).toBe(true);
    expect(await admitOne(store, key.id, T0 + 59_999, 1)).toMatchObject({ ok: false, reason: 'budget' });
    // Expired: the slot is free again, and the reservation is billed, never dropped at nothing.
    const next = await admitOne(store, key.id, T0 + 60_000, 0);
    expect(next.ok).toBe(true);
    expect((await store.getKey(key.id))?.spendUsd).toBe(1);
    expect(await store.spend({ groupBy: 'key' })).toMatchObject([{ spendUsd: 1, requests: 1 }]);
    // The late settlement replaces the charge by the real cost, and frees nothing a second time.
    if (!lost.ok || !next.ok) throw new Error('expected admissions');
    await store.settle(lost.reservationId, {
      model: 'gpt-4o',
      costUsd: 0.25,
      promptTokens: 0,
      completionTokens: 0,
      nowMs: T0 + 60_001,
    });
    expect((await store.getKey(key.id))?.spendUsd).toBe(0.25);
    expect((await store.getKey(key.id))?.spendByModel).toEqual({ 'gpt-4o': 0.25 });
    expect(await store.spend({ groupBy: 'key' })).toMatchObject([{ spendUsd: 0.25, requests: 1 }]);
    expect(await admitOne(store, key.id, T0 + 60_002)).toMatchObject({ ok: false, reason: 'parallel' });
  });
});

describe('RedisKeyStore against MemoryKeyStore', () => {
  // Costs are binary fractions, so every sum is exact and the two stores must agree to the bit.
  const cost = fc.constantFrom(0, 0.125, 0.25, 0.5, 1);
  const limit = (values: number[]) => fc.option(fc.constantFrom(...values), { nil: undefined });
  const limits = fc.record({ budgetUsd: limit([1, 2, 4]), rpm: limit([2, 5]), tpm: limit([100, 1000]) });
  const operation = fc.oneof(
    fc.record({
      op: fc.constant('admit' as const),
      key: fc.nat(1),
      cost,
      tokens: fc.constantFrom(0, 10, 200, 2000),
      waitMs: fc.constantFrom(0, 1, 7_000, 30_000, 86_400_000),
    }),
    fc.record({
      op: fc.constant('settle' as const),
      pick: fc.nat(9),
      cost,
      promptTokens: fc.constantFrom(0, 5, 300),
      completionTokens: fc.constantFrom(0, 50),
    }),
  );

  it('answers every random sequence of admissions and settlements exactly as the memory store', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          key: limits,
          team: limits,
          user: limits,
          maxParallel: limit([1, 3]),
          dailyRequests: limit([3, 6]),
          dailyTokens: limit([500, 3000]),
        }),
        fc.array(operation, { maxLength: 30 }),
        async (config, operations) => {
          // Day-long waits must not expire the Redis store's reservations: the memory store has no TTL.
          const redis = open({ reservationTtlMs: 30 * 86_400_000 });
          const memory = new MemoryKeyStore();
          const results: unknown[][] = [[], []];
          for (const [index, store] of [memory, redis].entries()) {
            const team = await store.createTeam({ id: 'team', name: 't', ...config.team });
            const user = await store.createUser({ id: 'user', name: 'u', ...config.user });
            const keyFields = {
              ...config.key,
              maxParallel: config.maxParallel,
              dailyRequests: config.dailyRequests,
              dailyTokens: config.dailyTokens,
              teamId: team.id,
              prefix: '',
            };
            await store.createKey({
              ...keyFields,
              id: 'k0',
              name: 'k0',
              hash: hashApiKey('k0'),
              userId: user.id,
            });
            await store.createKey({ ...keyFields, id: 'k1', name: 'k1', hash: hashApiKey('k1') });
            const open: string[] = [];
            let now = T0;
            for (const step of operations) {
              if (step.op === 'admit') {
                now += step.waitMs;
                const admission = await store.admit({
                  keyId: `k${step.key}`,
                  model: 'gpt-4o',
                  estimatedCostUsd: step.cost,
                  estimatedTokens: step.tokens,
                  nowMs: now,
                });
                if (admission.ok) open.push(admission.reservationId);
                results[index]!.push(admission.ok ? { ok: true, rateLimit: admission.rateLimit } : admission);
              } else if (open.length > 0) {
                const [reservationId] = open.splice(step.pick % open.length, 1);
                await store.settle(reservationId!, {
                  model: step.pick % 2 === 0 ? 'gpt-4o' : 'o3',
                  costUsd: step.cost,
                  promptTokens: step.promptTokens,
                  completionTokens: step.completionTokens,
                  nowMs: now,
                });
              }
            }
            results[index]!.push(
              await store.listKeys(),
              await store.getTeam('team'),
              await store.getUser('user'),
              await store.spend({ groupBy: 'model' }),
              await store.spend({ groupBy: 'key' }),
            );
          }
          const [fromMemory, fromRedis] = results;
          expect(withoutCreatedAt(fromRedis)).toEqual(withoutCreatedAt(fromMemory));
        },
      ),
      { numRuns: fuzzRuns(25) },
    );
  });
});

/** Results with `createdAt` dropped: the two stores create their records at different instants. */
function withoutCreatedAt(results: unknown[] | undefined): unknown {
  return JSON.parse(
    JSON.stringify(results ?? [], (name, value: unknown) => (name === 'createdAt' ? undefined : value)),
  );
}

describe('RedisKeyStore seeding', () => {
  const PLAIN = 'sk-llmux-seeded-plaintext-0123456789abcdef';
  const seed = {
    teams: [{ id: 'ml', name: 'ML', budgetUsd: 100 }],
    users: [{ id: 'ada', name: 'Ada', teamId: 'ml' }],
    keys: [
      { id: 'plain', name: 'from plaintext', key: PLAIN, teamId: 'ml', userId: 'ada' },
      { name: 'no id', key: `${PLAIN}-2` },
    ],
  };

  it('stores only hashes of plaintext keys, and seeds idempotently from every instance', async () => {
    const prefix = freshPrefix();
    const first = open({ prefix, seed, pepper: 'pepper' });
    const second = open({ prefix, seed, pepper: 'pepper' });
    await Promise.all([first.ready(), second.ready()]);
    expect(await first.findKeyByHash(hashApiKey(PLAIN, 'pepper'))).toMatchObject({
      id: 'plain',
      teamId: 'ml',
    });
    expect(await second.listKeys()).toHaveLength(2);
    expect(await second.listTeams()).toHaveLength(1);
    const stored = await dump(prefix);
    expect(stored).toContain(hashApiKey(PLAIN, 'pepper'));
    expect(stored).not.toContain(PLAIN);
    expect(stored).not.toContain(PLAIN.slice(13));
  });

  it('refuses a bad seed entry at construction, naming it', () => {
    expect(() => open({ seed: { keys: [{ name: 'k', key: 'sk-a', rpm: 0 }] } })).toThrow(
      expect.objectContaining({ code: 'invalid_field', field: 'keys[0].rpm' }),
    );
    expect(() => open({ seed: { teams: [{ name: 'no id' }] } })).toThrow(
      expect.objectContaining({ field: 'teams[0].id' }),
    );
  });
});

describe('RedisKeyStore when Redis cannot be reached', () => {
  const DOWN_URL = 'redis://127.0.0.1:1';
  const settlement = { model: 'gpt-4o', costUsd: 1, promptTokens: 1, completionTokens: 1, nowMs: T0 };

  // The bounds below are on the store's own (fake) clock, so a loaded machine cannot make a quick
  // failure look slow; real time passes only for the sockets.
  const FAKE_TIMERS: Parameters<typeof jest.useFakeTimers>[0] = {
    doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'],
  };

  it('fails closed with store_unavailable within commandTimeoutMs, and does not crash', async () => {
    jest.useFakeTimers(FAKE_TIMERS);
    try {
      const store = open({ url: DOWN_URL, commandTimeoutMs: 200 });
      const calls: (() => Promise<unknown>)[] = [
        () => admitOne(store, 'any'),
        () => store.findKeyByHash(hashApiKey('sk-x')),
        () => store.authFailureState('203.0.113.1', T0),
        () => store.recordAuthFailure('203.0.113.1', T0),
        () => store.settle('res_x', settlement),
        () => store.ping(),
      ];
      for (const call of calls) {
        const outcome = await settleOnFakeClock(call, 400);
        expect(outcome).toMatchObject({
          status: 'rejected',
          reason: { name: 'StoreUnavailableError', code: 'store_unavailable' },
        });
      }
    } finally {
      jest.useRealTimers();
    }
    const [store] = opened.slice(-1);
    await Promise.all([store!.close(), store!.close()]);
  });

  it('bounds a Redis that accepts connections but never answers by commandTimeoutMs', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      jest.useFakeTimers(FAKE_TIMERS);
      let store: RedisKeyStore;
      try {
        store = open({ url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 150 });
        const outcome = await settleOnFakeClock(() => admitOne(store, 'any'), 350);
        expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'store_unavailable' } });
      } finally {
        jest.useRealTimers();
      }
      await store.close();
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('fails open: admits unaccounted, blocks no address, and its settlement waits for Redis', async () => {
    const store = open({ url: DOWN_URL, commandTimeoutMs: 200, onStoreError: 'fail-open' });
    const admission = await admitOne(store, 'any');
    expect(admission).toMatchObject({ ok: true, rateLimit: undefined });
    if (!admission.ok) throw new Error('expected an admission');
    // Not dropped: keyAuth's settlement queue retries it until Redis answers.
    await expect(store.settle(admission.reservationId, settlement)).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    expect(await store.recordAuthFailure('203.0.113.1', T0)).toEqual({ blocked: false, retryAfterMs: 0 });
    expect(await store.authFailureState('203.0.113.1', T0)).toEqual({ blocked: false, retryAfterMs: 0 });
    await expect(store.findKeyByHash(hashApiKey('sk-never-seen'))).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    await store.close();
  });

  it('fails open on an outage of a host client, answering known keys, and resumes when it is back', async () => {
    const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    clients.push(client);
    const store = open({ redis: client, onStoreError: 'fail-open' });
    const hash = hashApiKey('sk-outage');
    const key = await store.createKey({ name: 'k', hash, prefix: '', budgetUsd: 1, maxParallel: 1 });
    await store.findKeyByHash(hash);
    const ended = new Promise((resolve) => client.once('end', resolve));
    client.disconnect();
    expect(await store.findKeyByHash(hash)).toMatchObject({ id: key.id, budgetUsd: 1 });
    const unaccounted = await Promise.all([admitOne(store, key.id, T0, 5), admitOne(store, key.id, T0, 5)]);
    expect(unaccounted.every((admission) => admission.ok)).toBe(true);
    await expect(store.ping()).rejects.toMatchObject({ code: 'store_unavailable' });
    await ended;
    await client.connect();
    expect(await admitOne(store, key.id, T0, 5)).toMatchObject({ ok: false, reason: 'budget' });
    expect((await admitOne(store, key.id, T0, 0.5)).ok).toBe(true);
    await store.ping();
  });

  it('refuses bad options with a TypeError naming them, never echoing a URL', () => {
    expect(() => new RedisKeyStore({} as RedisKeyStoreOptions)).toThrow(/redis .* or url/);
    expect(() => new RedisKeyStore({ url: REDIS_URL, redis: shared })).toThrow(TypeError);
    expect(() => new RedisKeyStore({ url: 'http://:secret@host' })).toThrow(/url must be/);
    expect(() => new RedisKeyStore({ url: 'http://:secret@host' })).not.toThrow(/secret/);
    expect(() => new RedisKeyStore({ redis: shared, commandTimeoutMs: 0 })).toThrow(
      /commandTimeoutMs.*got 0/,
    );
    expect(() => new RedisKeyStore({ redis: shared, onStoreError: 'open' as never })).toThrow(/onStoreError/);
    expect(() => new RedisKeyStore({ redis: shared, prefix: '' })).toThrow(/prefix/);
    expect(() => new RedisKeyStore({ redis: shared, authFailures: { max: 0 } })).toThrow(
      'RedisKeyStore: authFailures.max must be a positive integer, got 0',
    );
  });
});
