// MemoryKeyStore: the shared KeyStore behaviour suite, then what only the memory store has:
// seeding at construction, option checks, spend retention, and its bounds (LRU, models per record).
import { describe, expect, it } from '@jest/globals';
import { displayPrefix } from '../lib/keys/generate.js';
import { hashApiKey } from '../lib/keys/hash.js';
import { KeyStoreError } from '../lib/keys/errors.js';
import { MemoryKeyStore, type MemoryKeyStoreOptions } from '../lib/keys/memory-store.js';
import { seedKeyStore, type KeyStoreSeed } from '../lib/keys/seed.js';
import { describeKeyStore } from './support/key-store-suite.js';

describeKeyStore('MemoryKeyStore', (options) => new MemoryKeyStore(options));

const T0 = Date.parse('2026-06-15T12:00:00Z');
const DAY_MS = 86_400_000;
const PLAIN = 'sk-llmux-seeded-0123456789abcdefghij';
const PEPPER = 'pepper-for-tests';

const seed: KeyStoreSeed = {
  teams: [{ id: 'ml', name: 'ML', budgetUsd: 100 }],
  users: [{ id: 'ada', name: 'Ada', teamId: 'ml' }],
  keys: [
    { id: 'plain', name: 'from plaintext', key: PLAIN, teamId: 'ml', userId: 'ada', rpm: 60 },
    { id: 'hashed', name: 'from hash', hash: hashApiKey('sk-llmux-other'), prefix: 'sk-llmux-othe' },
    { id: 'bare', name: 'hash only', hash: hashApiKey('sk-llmux-bare').toUpperCase() },
  ],
};

describe('MemoryKeyStore seeding', () => {
  it('creates teams, users and keys at construction, hashing plaintext keys and keeping only the hash', async () => {
    const store = new MemoryKeyStore({ seed, clock: () => T0 });
    expect(await store.findKeyByHash(hashApiKey(PLAIN))).toMatchObject({
      id: 'plain',
      prefix: displayPrefix(PLAIN),
      teamId: 'ml',
      userId: 'ada',
      rpm: 60,
      createdAt: T0,
    });
    expect(await store.findKeyByHash(hashApiKey('sk-llmux-other'))).toMatchObject({
      id: 'hashed',
      prefix: 'sk-llmux-othe',
    });
    expect(await store.findKeyByHash(hashApiKey('sk-llmux-bare'))).toMatchObject({ id: 'bare', prefix: '' });
    expect(await store.getTeam('ml')).toMatchObject({ budgetUsd: 100 });
    expect(JSON.stringify(await store.listKeys())).not.toContain(PLAIN);
  });

  it('hashes seeded plaintext with the pepper when one is given', async () => {
    const store = new MemoryKeyStore({ seed, pepper: PEPPER });
    expect((await store.findKeyByHash(hashApiKey(PLAIN, PEPPER)))?.id).toBe('plain');
    expect(await store.findKeyByHash(hashApiKey(PLAIN))).toBeUndefined();
  });

  it('does the same through seedKeyStore on any store', async () => {
    const store = new MemoryKeyStore();
    await seedKeyStore(store, seed, { pepper: PEPPER });
    expect((await store.findKeyByHash(hashApiKey(PLAIN, PEPPER)))?.userId).toBe('ada');
    expect(await store.listKeys()).toHaveLength(3);
  });

  it.each<[string, KeyStoreSeed, string]>([
    [
      'a bad limit',
      {
        keys: [
          { name: 'k', key: 'sk-a' },
          { name: 'k', key: 'sk-b', rpm: 0 },
        ],
      },
      'keys[1].rpm',
    ],
    ['a missing team', { users: [{ name: 'u', teamId: 'nope' }] }, 'users[0].teamId'],
    [
      'both key and hash',
      { keys: [{ name: 'k', key: 'sk-a', hash: 'a'.repeat(64) } as never] },
      'keys[0].key',
    ],
    ['neither key nor hash', { keys: [{ name: 'k' } as never] }, 'keys[0].key'],
    ['an empty key', { keys: [{ name: 'k', key: '' }] }, 'keys[0].key'],
    [
      'a duplicate key',
      {
        keys: [
          { name: 'k', key: 'sk-a' },
          { name: 'k', key: 'sk-a' },
        ],
      },
      'keys[1].hash',
    ],
    ['a list that is not one', { teams: {} as never }, 'teams'],
  ])('refuses a seed with %s, naming the entry', async (_label, badSeed, field) => {
    expect(() => new MemoryKeyStore({ seed: badSeed })).toThrow(KeyStoreError);
    expect(() => new MemoryKeyStore({ seed: badSeed })).toThrow(expect.objectContaining({ field }));
    await expect(seedKeyStore(new MemoryKeyStore(), badSeed)).rejects.toMatchObject({ field });
  });
});

describe('MemoryKeyStore options', () => {
  it.each<[string, MemoryKeyStoreOptions, string]>([
    ['budgetToleranceUsd', { budgetToleranceUsd: -1 }, 'got -1'],
    ['budgetToleranceUsd', { budgetToleranceUsd: Number.NaN }, 'got NaN'],
    ['authFailures.max', { authFailures: { max: 0 } }, 'got 0'],
    ['authFailures.windowMs', { authFailures: { windowMs: 1.5 } }, 'got 1.5'],
    ['authFailures.maxTrackedAddresses', { authFailures: { maxTrackedAddresses: -5 } }, 'got -5'],
    ['spendRetentionDays', { spendRetentionDays: 0 }, 'got 0'],
    ['clock', { clock: 5 as never }, 'got 5'],
    ['pepper', { pepper: '' }, 'pepper'],
  ])('refuses a bad %s at construction with a TypeError naming it and the value', (name, options, value) => {
    expect(() => new MemoryKeyStore(options)).toThrow(TypeError);
    expect(() => new MemoryKeyStore(options)).toThrow(name);
    expect(() => new MemoryKeyStore(options)).toThrow(value);
  });

  it('stamps createdAt with its clock', async () => {
    const store = new MemoryKeyStore({ clock: () => 1234 });
    expect((await store.createTeam({ name: 't' })).createdAt).toBe(1234);
  });

  it('keeps working after close, which holds nothing to release', async () => {
    const store = new MemoryKeyStore();
    await store.close();
    await store.close();
    expect(await store.createTeam({ name: 't' })).toMatchObject({ name: 't' });
  });
});

describe('MemoryKeyStore bounds', () => {
  it('prunes daily spend buckets older than spendRetentionDays, and ignores settlements that old', async () => {
    const store = new MemoryKeyStore({ spendRetentionDays: 2 });
    const key = await store.createKey({ name: 'k', hash: hashApiKey('k'), prefix: '' });
    const spendOn = async (atMs: number) => {
      const admission = await store.admit({
        keyId: key.id,
        model: 'm',
        estimatedCostUsd: 1,
        estimatedTokens: 0,
        nowMs: atMs,
      });
      if (!admission.ok) throw new Error('refused');
      await store.settle(admission.reservationId, {
        model: 'm',
        costUsd: 1,
        promptTokens: 0,
        completionTokens: 0,
        nowMs: atMs,
      });
    };
    await spendOn(T0);
    await spendOn(T0 + DAY_MS);
    expect(await store.spend({ groupBy: 'key' })).toMatchObject([{ spendUsd: 2, requests: 2 }]);
    await spendOn(T0 + 2 * DAY_MS);
    expect(await store.spend({ groupBy: 'key' })).toMatchObject([{ spendUsd: 2, requests: 2 }]);
    expect(await store.spend({ groupBy: 'key', toMs: T0 })).toEqual([]);
    await spendOn(T0);
    expect(await store.spend({ groupBy: 'key' })).toMatchObject([{ spendUsd: 2, requests: 2 }]);
    // The key's own total is not a report: it keeps everything.
    expect((await store.getKey(key.id))!.spendUsd).toBe(4);
  });

  it('forgets the least recently touched address first, reads counting as touches', async () => {
    const store = new MemoryKeyStore({ authFailures: { max: 1, maxTrackedAddresses: 2 } });
    await store.recordAuthFailure('a', T0);
    await store.recordAuthFailure('b', T0);
    expect((await store.authFailureState('a', T0 + 1)).blocked).toBe(true);
    await store.recordAuthFailure('c', T0 + 2);
    expect((await store.authFailureState('a', T0 + 3)).blocked).toBe(true);
    expect((await store.authFailureState('b', T0 + 3)).blocked).toBe(false);
    expect((await store.authFailureState('c', T0 + 3)).blocked).toBe(true);
  });

  it('keeps at most 256 models per record in spendByModel, the rest under (other), with the total intact', async () => {
    const store = new MemoryKeyStore();
    const key = await store.createKey({ name: 'k', hash: hashApiKey('k'), prefix: '' });
    for (let i = 0; i < 260; i++) {
      const admission = await store.admit({
        keyId: key.id,
        model: `m${i}`,
        estimatedCostUsd: 0,
        estimatedTokens: 0,
        nowMs: T0,
      });
      if (!admission.ok) throw new Error('refused');
      await store.settle(admission.reservationId, {
        model: `m${i}`,
        costUsd: 1,
        promptTokens: 0,
        completionTokens: 0,
        nowMs: T0,
      });
    }
    const stored = (await store.getKey(key.id))!;
    expect(Object.keys(stored.spendByModel)).toHaveLength(257);
    expect(stored.spendByModel['(other)']).toBe(4);
    expect(stored.spendUsd).toBe(260);
    expect(await store.spend({ groupBy: 'model' })).toHaveLength(257);
  });

  it('keeps metadata as JSON keeps it, and refuses metadata too large', async () => {
    const store = new MemoryKeyStore();
    const team = await store.createTeam({ name: 't', metadata: { at: new Date(0), skip: undefined } });
    expect(team.metadata).toEqual({ at: '1970-01-01T00:00:00.000Z' });
    await expect(
      store.createTeam({ name: 't', metadata: { blob: 'x'.repeat(20_000) } }),
    ).rejects.toMatchObject({
      code: 'invalid_field',
      field: 'metadata',
    });
  });
});
