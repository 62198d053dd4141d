// One behaviour suite for every KeyStore (memory now, Redis later): it uses only the KeyStore
// interface and passes `nowMs` explicitly, so it runs on fake time with no sleeps or timers.
import { afterEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { hashApiKey } from '../../lib/keys/hash.js';
import type {
  Admission,
  AdmissionRequest,
  ApiKey,
  KeyPatch,
  KeyStore,
  NewApiKey,
  Settlement,
  SpendRow,
} from '../../lib/keys/types.js';

/** The options every store under test accepts (a subset of each store's own options). */
export interface KeyStoreSuiteOptions {
  /** USD by which a budget may be passed. Default 0. */
  budgetToleranceUsd?: number;
  /** The failed-auth limiter. Defaults: 5 failures per 900 000 ms, 10 000 addresses. */
  authFailures?: { max?: number; windowMs?: number; maxTrackedAddresses?: number };
}

/** Makes a fresh, empty store for one test. */
export type MakeKeyStore = (options: KeyStoreSuiteOptions) => Promise<KeyStore> | KeyStore;

const T0 = Date.parse('2026-06-15T12:00:00Z');
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

/** A fresh hash for a fresh key. */
const newHash = (): string => hashApiKey(`sk-llmux-suite-${randomUUID()}`);

/** The reservation id of an admission that must have passed. */
function admitted(admission: Admission): string {
  if (!admission.ok)
    throw new Error(`expected an admission, got a ${admission.reason} refusal (${admission.subject})`);
  return admission.reservationId;
}

/** An admission without its (random) reservation id, to compare two runs. */
function shape(admission: Admission): Omit<Admission, 'reservationId'> {
  if (!admission.ok) return admission;
  const { reservationId: _id, ...rest } = admission;
  return rest;
}

/** Spend rows in group order (`null` last), so no store is held to a row order. */
function byGroup(rows: SpendRow[]): SpendRow[] {
  return [...rows].sort((a, b) =>
    a.group === b.group ? 0 : a.group === null ? 1 : b.group === null ? -1 : a.group < b.group ? -1 : 1,
  );
}

/**
 * Registers the KeyStore behaviour suite under `name`. `makeStore` is called once per test
 * (several times in a few); every store it made is closed after the test, then `cleanup` runs.
 *
 * @example
 * describeKeyStore('MemoryKeyStore', (options) => new MemoryKeyStore(options));
 */

/** The token classes of a spend row whose settlements reported none. */
const NO_TOKEN_CLASSES = {
  cachedTokens: 0,
  cacheWriteTokens: 0,
  reasoningTokens: 0,
  audioPromptTokens: 0,
  audioCompletionTokens: 0,
};

export function describeKeyStore(
  name: string,
  makeStore: MakeKeyStore,
  cleanup?: (store: KeyStore) => Promise<void> | void,
): void {
  describe(`KeyStore contract: ${name}`, () => {
    const opened: KeyStore[] = [];

    async function open(options: KeyStoreSuiteOptions = {}): Promise<KeyStore> {
      const store = await makeStore(options);
      opened.push(store);
      return store;
    }

    afterEach(async () => {
      for (const store of opened.splice(0)) {
        await store.close();
        await cleanup?.(store);
      }
    });

    const keyIn = (store: KeyStore, fields: Partial<NewApiKey> = {}): Promise<ApiKey> =>
      store.createKey({ name: 'suite key', hash: newHash(), prefix: 'sk-llmux-test', ...fields });

    const admit = (
      store: KeyStore,
      keyId: string,
      nowMs: number,
      request: Partial<AdmissionRequest> = {},
    ): Promise<Admission> =>
      store.admit({ keyId, model: 'gpt-4o', estimatedCostUsd: 0, estimatedTokens: 0, nowMs, ...request });

    const settle = (
      store: KeyStore,
      reservationId: string,
      nowMs: number,
      settlement: Partial<Settlement> = {},
    ) =>
      store.settle(reservationId, {
        model: 'gpt-4o',
        costUsd: 0,
        promptTokens: 0,
        completionTokens: 0,
        nowMs,
        ...settlement,
      });

    describe('records', () => {
      it('creates a key with a generated id, no spend, and finds it by id, by hash and in the list', async () => {
        const store = await open();
        const hash = newHash();
        const key = await store.createKey({ name: 'ci', hash, prefix: 'sk-llmux-AbCd', rpm: 10 });
        expect(key).toMatchObject({ name: 'ci', hash, prefix: 'sk-llmux-AbCd', rpm: 10, revoked: false });
        expect(typeof key.id).toBe('string');
        expect(key.spendUsd).toBe(0);
        expect(key.spendByModel).toEqual({});
        expect(Number.isFinite(key.createdAt)).toBe(true);
        expect(await store.getKey(key.id)).toEqual(key);
        expect(await store.findKeyByHash(hash)).toEqual(key);
        expect(await store.findKeyByHash(newHash())).toBeUndefined();
        expect(await store.getKey('nope')).toBeUndefined();
        expect(await store.listKeys()).toEqual([key]);
      });

      it('keeps a given id, and refuses a second record with the same id or a key with the same hash', async () => {
        const store = await open();
        const hash = newHash();
        await keyIn(store, { id: 'ci', hash });
        expect((await store.getKey('ci'))?.id).toBe('ci');
        await expect(keyIn(store, { id: 'ci' })).rejects.toMatchObject({ code: 'duplicate_id', field: 'id' });
        await expect(keyIn(store, { hash })).rejects.toMatchObject({ code: 'duplicate_hash', field: 'hash' });
        await store.createTeam({ id: 'ml', name: 'ML' });
        await expect(store.createTeam({ id: 'ml', name: 'again' })).rejects.toMatchObject({
          code: 'duplicate_id',
        });
        await store.createUser({ id: 'ada', name: 'Ada' });
        await expect(store.createUser({ id: 'ada', name: 'again' })).rejects.toMatchObject({
          code: 'duplicate_id',
        });
        expect(await store.listKeys()).toHaveLength(1);
      });

      it('never keeps an object it was given: changing the input after create changes nothing', async () => {
        const store = await open();
        const models = ['gpt-4o*'];
        const metadata = { owner: { name: 'ada' }, tags: ['a'] };
        const input = { name: 'k', hash: newHash(), prefix: 'sk-llmux-x', models, metadata };
        const key = await store.createKey(input);
        const teamInput = { name: 'team', models: ['o3'], metadata: { cost: { centre: 1 } } };
        const team = await store.createTeam(teamInput);
        const userInput = { name: 'user', models: ['o1'], metadata: { a: [1] } };
        const user = await store.createUser(userInput);
        models.push('o1');
        metadata.owner.name = 'eve';
        metadata.tags.push('b');
        input.name = 'changed';
        teamInput.models.push('x');
        teamInput.metadata.cost.centre = 2;
        userInput.models[0] = 'y';
        userInput.metadata.a.push(2);
        expect(await store.getKey(key.id)).toMatchObject({
          name: 'k',
          models: ['gpt-4o*'],
          metadata: { owner: { name: 'ada' }, tags: ['a'] },
        });
        expect(await store.getTeam(team.id)).toMatchObject({
          models: ['o3'],
          metadata: { cost: { centre: 1 } },
        });
        expect(await store.getUser(user.id)).toMatchObject({ models: ['o1'], metadata: { a: [1] } });
        const patch: KeyPatch = { models: ['a'], metadata: { n: { m: 1 } } };
        await store.updateKey(key.id, patch);
        patch.models!.push('b');
        (patch.metadata!.n as { m: number }).m = 2;
        expect(await store.getKey(key.id)).toMatchObject({ models: ['a'], metadata: { n: { m: 1 } } });
      });

      it('never hands out its own objects: changing what get, find or list returned changes nothing', async () => {
        const store = await open();
        const team = await store.createTeam({
          name: 'team',
          models: ['gpt-4o'],
          metadata: { deep: { x: 1 } },
        });
        const user = await store.createUser({ name: 'user', models: ['gpt-4o'] });
        const key = await keyIn(store, {
          teamId: team.id,
          userId: user.id,
          models: ['gpt-4o'],
          metadata: { deep: { x: 1 } },
        });
        await settle(store, admitted(await admit(store, key.id, T0)), T0, { costUsd: 2 });
        const before = await store.getKey(key.id);
        for (const copy of [
          await store.getKey(key.id),
          await store.findKeyByHash(key.hash),
          ...(await store.listKeys()),
          await store.getTeam(team.id),
          ...(await store.listTeams()),
          await store.getUser(user.id),
          ...(await store.listUsers()),
        ] as (ApiKey & { metadata?: { deep?: { x: number } } })[]) {
          copy.models!.push('o3');
          copy.spendByModel['gpt-4o'] = 1_000;
          copy.spendByModel['o3'] = 5;
          copy.spendUsd = 1_000;
          copy.revoked = true;
          copy.rpm = 1;
          if (copy.metadata?.deep !== undefined) copy.metadata.deep.x = 2;
        }
        expect(await store.getKey(key.id)).toEqual(before);
        expect(before).toMatchObject({ spendUsd: 2, spendByModel: { 'gpt-4o': 2 }, revoked: false });
        expect(await store.getTeam(team.id)).toMatchObject({
          models: ['gpt-4o'],
          spendUsd: 2,
          spendByModel: { 'gpt-4o': 2 },
          metadata: { deep: { x: 1 } },
        });
        expect(await store.getUser(user.id)).toMatchObject({
          models: ['gpt-4o'],
          spendByModel: { 'gpt-4o': 2 },
        });
      });

      it('keeps its spend map intact while a caller mutates a returned copy between settlements', async () => {
        const store = await open();
        const key = await keyIn(store);
        const held = await store.getKey(key.id);
        const reservations = await Promise.all(Array.from({ length: 6 }, () => admit(store, key.id, T0)));
        await Promise.all(
          reservations.map((admission, i) => {
            held!.spendByModel[i % 2 === 0 ? 'gpt-4o' : 'o3'] = -i;
            delete held!.spendByModel['gpt-4o'];
            return settle(store, admitted(admission), T0, {
              model: i % 2 === 0 ? 'gpt-4o' : 'o3',
              costUsd: 0.5,
            });
          }),
        );
        expect(await store.getKey(key.id)).toMatchObject({
          spendUsd: 3,
          spendByModel: { 'gpt-4o': 1.5, o3: 1.5 },
        });
      });

      it('updates limits, clears a limit given null, and answers undefined for an unknown id', async () => {
        const store = await open();
        const key = await keyIn(store, { rpm: 1, tpm: 100, models: ['gpt-4o'], metadata: { a: 1 } });
        const updated = await store.updateKey(key.id, { name: 'renamed', rpm: null, tpm: 200, models: null });
        expect(updated).toMatchObject({ id: key.id, name: 'renamed', tpm: 200, metadata: { a: 1 } });
        expect(updated!.rpm).toBeUndefined();
        expect(updated!.models).toBeUndefined();
        expect(await store.getKey(key.id)).toEqual(updated);
        admitted(await admit(store, key.id, T0));
        admitted(await admit(store, key.id, T0));
        expect(await store.updateKey('nope', { rpm: 1 })).toBeUndefined();
        expect(await store.updateTeam('nope', { rpm: 1 })).toBeUndefined();
        expect(await store.updateUser('nope', { rpm: 1 })).toBeUndefined();
        const team = await store.createTeam({ name: 't', budgetUsd: 5 });
        expect((await store.updateTeam(team.id, { budgetUsd: null, rpm: 3 }))?.budgetUsd).toBeUndefined();
        const user = await store.createUser({ name: 'u', teamId: team.id });
        expect((await store.updateUser(user.id, { teamId: null }))?.teamId).toBeUndefined();
      });

      it('applies a patch whole or not at all', async () => {
        const store = await open();
        const key = await keyIn(store, { rpm: 5 });
        await expect(store.updateKey(key.id, { rpm: 6, tpm: 0 })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'tpm',
        });
        expect((await store.getKey(key.id))!.rpm).toBe(5);
        await expect(store.updateKey(key.id, { name: null })).rejects.toMatchObject({ field: 'name' });
        for (const field of ['revoked', 'hash', 'spendUsd', 'teamId', 'id']) {
          await expect(store.updateKey(key.id, { [field]: false } as KeyPatch)).rejects.toMatchObject({
            code: 'invalid_field',
            field,
          });
        }
        expect(await store.getKey(key.id)).toEqual(key);
      });

      it('revokes for good: the key stays findable, marked revoked, and no patch brings it back', async () => {
        const store = await open();
        const key = await keyIn(store);
        expect(await store.revokeKey(key.id)).toBe(true);
        expect(await store.revokeKey(key.id)).toBe(true);
        expect(await store.revokeKey('nope')).toBe(false);
        expect(await store.findKeyByHash(key.hash)).toMatchObject({ id: key.id, revoked: true });
        await expect(store.updateKey(key.id, { revoked: false } as KeyPatch)).rejects.toMatchObject({
          field: 'revoked',
        });
        await store.updateKey(key.id, { name: 'still revoked' });
        expect((await store.getKey(key.id))!.revoked).toBe(true);
      });

      it('deletes teams and users nothing references, and refuses to delete ones still referenced', async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't' });
        const user = await store.createUser({ name: 'u', teamId: team.id });
        const key = await keyIn(store, { userId: user.id });
        await expect(store.deleteTeam(team.id)).rejects.toMatchObject({ code: 'in_use' });
        await expect(store.deleteUser(user.id)).rejects.toMatchObject({ code: 'in_use' });
        expect(await store.getUser(user.id)).toBeDefined();
        const lone = await store.createTeam({ name: 'lone' });
        expect(await store.deleteTeam(lone.id)).toBe(true);
        expect(await store.deleteTeam(lone.id)).toBe(false);
        expect(await store.getTeam(lone.id)).toBeUndefined();
        const other = await store.createUser({ name: 'other' });
        expect(await store.deleteUser(other.id)).toBe(true);
        expect(await store.deleteUser(other.id)).toBe(false);
        expect((await store.listUsers()).map((u) => u.id)).toEqual([user.id]);
        expect((await store.getKey(key.id))!.userId).toBe(user.id);
      });

      it.each<[string, Record<string, unknown>]>([
        ['name', { name: '' }],
        ['name', { name: ' '.repeat(3) }],
        ['name', { name: 'x'.repeat(201) }],
        ['name', { name: 7 }],
        ['hash', { hash: 'abc' }],
        ['hash', { hash: 'g'.repeat(64) }],
        ['prefix', { prefix: 42 }],
        ['id', { id: '' }],
        ['id', { id: 'has space' }],
        ['budgetUsd', { budgetUsd: -1 }],
        ['budgetUsd', { budgetUsd: Number.NaN }],
        ['budgetUsd', { budgetUsd: Number.POSITIVE_INFINITY }],
        ['budgetUsd', { budgetUsd: '5' }],
        ['rpm', { rpm: 0 }],
        ['rpm', { rpm: 1.5 }],
        ['tpm', { tpm: -10 }],
        ['maxParallel', { maxParallel: 0 }],
        ['dailyRequests', { dailyRequests: 2.5 }],
        ['dailyTokens', { dailyTokens: Number.NaN }],
        ['expiresAt', { expiresAt: Number.NaN }],
        ['models', { models: 'gpt-4o' }],
        ['models', { models: [''] }],
        ['models', { models: ['gpt-4o', 3] }],
        ['metadata', { metadata: 'note' }],
        ['metadata', { metadata: [1] }],
        ['teamId', { teamId: 'no-such-team' }],
        ['userId', { userId: 'no-such-user' }],
        ['spendUsd', { spendUsd: 0 }],
        ['revoked', { revoked: false }],
      ])('refuses a key whose %s is invalid, naming the field', async (field, fields) => {
        const store = await open();
        await expect(keyIn(store, fields as Partial<NewApiKey>)).rejects.toMatchObject({
          name: 'KeyStoreError',
          code: 'invalid_field',
          field,
        });
        expect(await store.listKeys()).toEqual([]);
      });

      it('refuses invalid teams and users, naming the field', async () => {
        const store = await open();
        await expect(store.createTeam({ name: '' })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'name',
        });
        await expect(store.createTeam({ name: 't', rpm: 0 })).rejects.toMatchObject({ field: 'rpm' });
        await expect(store.createUser({ name: 'u', teamId: 'nope' })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'teamId',
        });
        const user = await store.createUser({ name: 'u' });
        await expect(store.updateUser(user.id, { teamId: 'nope' })).rejects.toMatchObject({
          field: 'teamId',
        });
        await expect(store.updateTeam('x', {})).resolves.toBeUndefined();
        expect(await store.listTeams()).toEqual([]);
      });
    });

    describe('budgets', () => {
      it('admits exactly 10 of 50 concurrent requests against a budget that fits 10, and spends exactly the budget', async () => {
        const store = await open();
        const key = await keyIn(store, { budgetUsd: 1 });
        const admissions = await Promise.all(
          Array.from({ length: 50 }, () => admit(store, key.id, T0, { estimatedCostUsd: 0.1 })),
        );
        const passed = admissions.filter((a) => a.ok);
        expect(passed).toHaveLength(10);
        for (const refusal of admissions.filter((a) => !a.ok)) {
          expect(refusal).toMatchObject({ reason: 'budget', subject: 'key', retryAfterMs: undefined });
        }
        await Promise.all(passed.map((a) => settle(store, admitted(a), T0, { costUsd: 0.1 })));
        expect((await store.getKey(key.id))!.spendUsd).toBeCloseTo(1, 9);
        expect((await admit(store, key.id, T0, { estimatedCostUsd: 0.01 })).ok).toBe(false);
      });

      it('frees what a request did not use: settling below the estimate admits more', async () => {
        const store = await open();
        const key = await keyIn(store, { budgetUsd: 1 });
        const first = await Promise.all(
          Array.from({ length: 20 }, () => admit(store, key.id, T0, { estimatedCostUsd: 0.1 })),
        );
        expect(first.filter((a) => a.ok)).toHaveLength(10);
        await Promise.all(
          first.filter((a) => a.ok).map((a) => settle(store, admitted(a), T0, { costUsd: 0.05 })),
        );
        const second = await Promise.all(
          Array.from({ length: 20 }, () => admit(store, key.id, T0, { estimatedCostUsd: 0.1 })),
        );
        expect(second.filter((a) => a.ok)).toHaveLength(5);
      });

      it('lets spend pass the budget by at most the configured tolerance', async () => {
        const store = await open({ budgetToleranceUsd: 0.25 });
        const key = await keyIn(store, { budgetUsd: 1 });
        const admissions = await Promise.all(
          Array.from({ length: 20 }, () => admit(store, key.id, T0, { estimatedCostUsd: 0.25 })),
        );
        expect(admissions.filter((a) => a.ok)).toHaveLength(5);
      });

      it('holds a team budget across its keys and a user budget across theirs', async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't', budgetUsd: 1 });
        const user = await store.createUser({ name: 'u', budgetUsd: 0.5 });
        const a = await keyIn(store, { teamId: team.id });
        const b = await keyIn(store, { teamId: team.id });
        const c = await keyIn(store, { userId: user.id });
        const d = await keyIn(store, { userId: user.id });
        admitted(await admit(store, a.id, T0, { estimatedCostUsd: 0.4 }));
        admitted(await admit(store, b.id, T0, { estimatedCostUsd: 0.4 }));
        expect(await admit(store, a.id, T0, { estimatedCostUsd: 0.4 })).toMatchObject({
          ok: false,
          reason: 'budget',
          subject: 'team',
          retryAfterMs: undefined,
        });
        admitted(await admit(store, c.id, T0, { estimatedCostUsd: 0.3 }));
        expect(await admit(store, d.id, T0, { estimatedCostUsd: 0.3 })).toMatchObject({
          ok: false,
          reason: 'budget',
          subject: 'user',
        });
      });

      it('charges settled spend, per model, to the key and to the team and user it had at admission', async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't' });
        const user = await store.createUser({ name: 'u', teamId: team.id });
        const a = await keyIn(store, { teamId: team.id, userId: user.id });
        const b = await keyIn(store, { teamId: team.id });
        await settle(store, admitted(await admit(store, a.id, T0)), T0, { costUsd: 0.5 });
        await settle(store, admitted(await admit(store, a.id, T0)), T0, { model: 'o3', costUsd: 0.25 });
        await settle(store, admitted(await admit(store, b.id, T0)), T0, { costUsd: 1 });
        expect(await store.getKey(a.id)).toMatchObject({
          spendUsd: 0.75,
          spendByModel: { 'gpt-4o': 0.5, o3: 0.25 },
        });
        expect(await store.getKey(b.id)).toMatchObject({ spendUsd: 1, spendByModel: { 'gpt-4o': 1 } });
        expect(await store.getTeam(team.id)).toMatchObject({
          spendUsd: 1.75,
          spendByModel: { 'gpt-4o': 1.5, o3: 0.25 },
        });
        expect(await store.getUser(user.id)).toMatchObject({
          spendUsd: 0.75,
          spendByModel: { 'gpt-4o': 0.5, o3: 0.25 },
        });
      });
    });

    describe('a refusal changes nothing', () => {
      interface RefusalCase {
        limits: Partial<NewApiKey>;
        /** Run on both keys before the refused request. */
        before?: (store: KeyStore, keyId: string) => Promise<void>;
        request: Partial<AdmissionRequest>;
        /** Applied to both keys after the refusal. */
        patch: KeyPatch;
      }
      const holdOne = async (store: KeyStore, keyId: string) => {
        admitted(await admit(store, keyId, T0, { estimatedCostUsd: 0.1, estimatedTokens: 10 }));
      };
      it.each<[string, RefusalCase]>([
        [
          'budget',
          {
            limits: { budgetUsd: 0.5, rpm: 3, tpm: 1000 },
            request: { estimatedCostUsd: 1 },
            patch: { budgetUsd: 10 },
          },
        ],
        [
          'daily_requests',
          {
            limits: { dailyRequests: 1, rpm: 3, budgetUsd: 10 },
            before: holdOne,
            request: {},
            patch: { dailyRequests: 3 },
          },
        ],
        [
          'daily_tokens',
          {
            limits: { dailyTokens: 50, rpm: 3 },
            request: { estimatedTokens: 100 },
            patch: { dailyTokens: 1000 },
          },
        ],
        [
          'rpm',
          {
            limits: { rpm: 1, tpm: 1000, dailyRequests: 9 },
            before: holdOne,
            request: {},
            patch: { rpm: 2 },
          },
        ],
        [
          'tpm',
          {
            limits: { tpm: 50, rpm: 3, dailyTokens: 1000 },
            request: { estimatedTokens: 100 },
            patch: { tpm: 1000 },
          },
        ],
        [
          'parallel',
          {
            limits: { maxParallel: 1, rpm: 5, tpm: 1000, budgetUsd: 1 },
            before: holdOne,
            request: {},
            patch: { maxParallel: 3 },
          },
        ],
      ])('a %s refusal leaves every window and reservation as it was', async (reason, refusalCase) => {
        const store = await open();
        const refused = await keyIn(store, refusalCase.limits);
        const twin = await keyIn(store, refusalCase.limits);
        const request = { estimatedCostUsd: 0.1, estimatedTokens: 10, ...refusalCase.request };
        for (const key of [refused, twin]) await refusalCase.before?.(store, key.id);
        expect(await admit(store, refused.id, T0, request)).toMatchObject({ ok: false, reason });
        for (const key of [refused, twin]) await store.updateKey(key.id, refusalCase.patch);
        const run = async (keyId: string) => {
          const results: Omit<Admission, 'reservationId'>[] = [];
          for (const atMs of [T0, T0, T0, T0 + 1000, T0 + 30_000])
            results.push(shape(await admit(store, keyId, atMs, request)));
          return results;
        };
        const afterRefusal = await run(refused.id);
        expect(afterRefusal.some((admission) => admission.ok)).toBe(true);
        expect(afterRefusal).toEqual(await run(twin.id));
      });
    });

    describe('rate windows', () => {
      it('admits exactly rpm requests per minute, names the wait, and recovers after a quiet minute', async () => {
        const store = await open();
        const key = await keyIn(store, { rpm: 3 });
        const burst = [];
        for (let i = 0; i < 3; i++) burst.push(await admit(store, key.id, T0));
        expect(burst.map((a) => a.rateLimit)).toEqual([
          { limit: 3, remaining: 2, resetMs: 20_000 },
          { limit: 3, remaining: 1, resetMs: 40_000 },
          { limit: 3, remaining: 0, resetMs: 60_000 },
        ]);
        for (const admission of burst) await settle(store, admitted(admission), T0);
        expect(await admit(store, key.id, T0)).toEqual({
          ok: false,
          reason: 'rpm',
          subject: 'key',
          retryAfterMs: 20_000,
          rateLimit: { limit: 3, remaining: 0, resetMs: 60_000 },
        });
        expect((await admit(store, key.id, T0 + 19_999)).ok).toBe(false);
        admitted(await admit(store, key.id, T0 + 20_000));
        expect((await admit(store, key.id, T0 + 20_000)).ok).toBe(false);
        const later = T0 + 20_000 + MINUTE_MS;
        for (let i = 0; i < 3; i++) admitted(await admit(store, key.id, later));
        expect(await admit(store, key.id, later)).toMatchObject({
          ok: false,
          reason: 'rpm',
          retryAfterMs: 20_000,
        });
      });

      it('counts estimated tokens against tpm and corrects them to the real count at settlement', async () => {
        const store = await open();
        const key = await keyIn(store, { tpm: 1000 });
        const first = await admit(store, key.id, T0, { estimatedTokens: 800 });
        expect(first.rateLimit).toEqual({ limit: 1000, remaining: 200, resetMs: 48_000 });
        expect(await admit(store, key.id, T0, { estimatedTokens: 300 })).toMatchObject({
          ok: false,
          reason: 'tpm',
          subject: 'key',
          retryAfterMs: 6_000,
        });
        await settle(store, admitted(first), T0, { promptTokens: 60, completionTokens: 40 });
        const second = await admit(store, key.id, T0, { estimatedTokens: 300 });
        expect(second.rateLimit).toEqual({ limit: 1000, remaining: 600, resetMs: 24_000 });
        await settle(store, admitted(second), T0, { promptTokens: 100, completionTokens: 800 });
        expect(await admit(store, key.id, T0, { estimatedTokens: 1 })).toMatchObject({
          ok: false,
          reason: 'tpm',
          retryAfterMs: 60,
        });
      });

      it('refuses an estimate above the whole tpm limit with no retry-after', async () => {
        const store = await open();
        const key = await keyIn(store, { tpm: 1000 });
        expect(await admit(store, key.id, T0, { estimatedTokens: 1001 })).toMatchObject({
          ok: false,
          reason: 'tpm',
          retryAfterMs: undefined,
        });
      });

      it("applies the team's and the user's windows to every key in them", async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't', rpm: 2 });
        const user = await store.createUser({ name: 'u', tpm: 100 });
        const a = await keyIn(store, { teamId: team.id });
        const b = await keyIn(store, { teamId: team.id, rpm: 10 });
        admitted(await admit(store, a.id, T0));
        admitted(await admit(store, b.id, T0));
        expect(await admit(store, b.id, T0)).toMatchObject({
          ok: false,
          reason: 'rpm',
          subject: 'team',
          retryAfterMs: 30_000,
          rateLimit: { limit: 2, remaining: 0 },
        });
        const c = await keyIn(store, { userId: user.id });
        const d = await keyIn(store, { userId: user.id });
        admitted(await admit(store, c.id, T0, { estimatedTokens: 60 }));
        expect(await admit(store, d.id, T0, { estimatedTokens: 60 })).toMatchObject({
          ok: false,
          reason: 'tpm',
          subject: 'user',
        });
      });

      it('reports the tightest window that applies', async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't', rpm: 4 });
        const key = await keyIn(store, { teamId: team.id, rpm: 100, tpm: 1000 });
        const admission = await admit(store, key.id, T0, { estimatedTokens: 100 });
        expect(admission.rateLimit).toEqual({ limit: 4, remaining: 3, resetMs: 15_000 });
        const unlimited = await keyIn(store);
        expect((await admit(store, unlimited.id, T0)).rateLimit).toBeUndefined();
      });
    });

    describe('parallel requests and settlement', () => {
      it('holds maxParallel slots until their requests settle', async () => {
        const store = await open();
        const key = await keyIn(store, { maxParallel: 2 });
        const a = admitted(await admit(store, key.id, T0));
        admitted(await admit(store, key.id, T0));
        const refused = await admit(store, key.id, T0);
        expect(refused).toMatchObject({ ok: false, reason: 'parallel', subject: 'key' });
        expect(refused.ok === false && refused.retryAfterMs! > 0).toBe(true);
        await settle(store, a, T0);
        admitted(await admit(store, key.id, T0));
        expect((await admit(store, key.id, T0)).ok).toBe(false);
      });

      it('refuses a reservation id already in use, and the refusal takes nothing', async () => {
        const store = await open();
        const key = await keyIn(store, { maxParallel: 2, budgetUsd: 10, rpm: 2 });
        const id = `r-${randomUUID()}`;
        expect(admitted(await admit(store, key.id, T0, { reservationId: id, estimatedCostUsd: 1 }))).toBe(id);
        await expect(
          admit(store, key.id, T0, { reservationId: id, estimatedCostUsd: 1 }),
        ).rejects.toMatchObject({
          field: 'reservationId',
        });
        // No slot, no rpm, no hold was taken by the refusal: the second request of the minute passes.
        admitted(await admit(store, key.id, T0, { estimatedCostUsd: 1 }));
        await settle(store, id, T0, { costUsd: 1 });
        expect((await store.getKey(key.id))!.spendUsd).toBe(1);
      });

      it('settles a reservation once, however often it is settled, and ignores unknown ones', async () => {
        const store = await open();
        const key = await keyIn(store, { maxParallel: 2, budgetUsd: 10 });
        const a = admitted(await admit(store, key.id, T0, { estimatedCostUsd: 1 }));
        admitted(await admit(store, key.id, T0, { estimatedCostUsd: 1 }));
        await Promise.all([settle(store, a, T0, { costUsd: 1 }), settle(store, a, T0, { costUsd: 1 })]);
        await settle(store, a, T0, { costUsd: 1 });
        await settle(store, 'no-such-reservation', T0, { costUsd: 5 });
        expect((await store.getKey(key.id))!.spendUsd).toBe(1);
        admitted(await admit(store, key.id, T0));
        expect(await admit(store, key.id, T0)).toMatchObject({ ok: false, reason: 'parallel' });
        const rows = await store.spend({ groupBy: 'key' });
        expect(rows).toEqual([
          {
            group: key.id,
            spendUsd: 1,
            requests: 1,
            promptTokens: 0,
            completionTokens: 0,
            ...NO_TOKEN_CLASSES,
          },
        ]);
      });

      it('refuses malformed admissions and unknown keys', async () => {
        const store = await open();
        const key = await keyIn(store);
        await expect(admit(store, 'no-such-key', T0)).rejects.toMatchObject({
          code: 'not_found',
          field: 'keyId',
        });
        await expect(admit(store, key.id, T0, { estimatedCostUsd: -1 })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'estimatedCostUsd',
        });
        await expect(admit(store, key.id, T0, { estimatedTokens: Number.NaN })).rejects.toMatchObject({
          field: 'estimatedTokens',
        });
        await expect(admit(store, key.id, Number.NaN)).rejects.toMatchObject({ field: 'nowMs' });
      });
    });

    describe('daily quotas reset at 00:00 UTC, whatever the local time', () => {
      it('resets daily requests at UTC midnight and not at Paris midnight or its DST change (2026-03-29)', async () => {
        const store = await open();
        const key = await keyIn(store, { dailyRequests: 2 });
        const evening = Date.parse('2026-03-28T22:30:00Z');
        admitted(await admit(store, key.id, evening));
        admitted(await admit(store, key.id, evening));
        expect(await admit(store, key.id, evening)).toMatchObject({
          ok: false,
          reason: 'daily_requests',
          subject: 'key',
          retryAfterMs: 90 * MINUTE_MS,
        });
        // 00:00 in Paris (CET), still 28 March in UTC.
        expect((await admit(store, key.id, Date.parse('2026-03-28T23:00:00Z'))).ok).toBe(false);
        expect(await admit(store, key.id, Date.parse('2026-03-28T23:59:59.999Z'))).toMatchObject({
          ok: false,
          retryAfterMs: 1,
        });
        admitted(await admit(store, key.id, Date.parse('2026-03-29T00:00:00Z')));
        admitted(await admit(store, key.id, Date.parse('2026-03-29T00:59:59Z')));
        // Clocks in Europe jump from 02:00 CET to 03:00 CEST: the UTC day goes on, 24 hours long.
        expect(await admit(store, key.id, Date.parse('2026-03-29T01:00:00Z'))).toMatchObject({
          ok: false,
          reason: 'daily_requests',
          retryAfterMs: 23 * HOUR_MS,
        });
        admitted(await admit(store, key.id, Date.parse('2026-03-30T00:00:00Z')));
      });

      it('resets daily tokens at UTC midnight and not at New York midnight or its DST change (2026-11-01)', async () => {
        const store = await open();
        const key = await keyIn(store, { dailyTokens: 1000 });
        admitted(await admit(store, key.id, Date.parse('2026-10-31T23:00:00Z'), { estimatedTokens: 600 }));
        expect(
          await admit(store, key.id, Date.parse('2026-10-31T23:59:59.999Z'), { estimatedTokens: 600 }),
        ).toMatchObject({ ok: false, reason: 'daily_tokens', retryAfterMs: 1 });
        // 20:00 on 31 October in New York, and already 1 November in UTC.
        admitted(await admit(store, key.id, Date.parse('2026-11-01T00:00:00Z'), { estimatedTokens: 600 }));
        // 00:00 in New York (EDT): no reset.
        admitted(await admit(store, key.id, Date.parse('2026-11-01T04:00:00Z'), { estimatedTokens: 400 }));
        // 02:00 EDT becomes 01:00 EST: no reset either.
        expect(
          await admit(store, key.id, Date.parse('2026-11-01T06:00:00Z'), { estimatedTokens: 1 }),
        ).toMatchObject({
          ok: false,
          reason: 'daily_tokens',
          retryAfterMs: 18 * HOUR_MS,
        });
        admitted(await admit(store, key.id, Date.parse('2026-11-02T00:00:00Z'), { estimatedTokens: 1000 }));
      });

      it('gives back unused daily tokens at settlement, and refuses an estimate above the whole quota for good', async () => {
        const store = await open();
        const key = await keyIn(store, { dailyTokens: 1000 });
        const first = admitted(await admit(store, key.id, T0, { estimatedTokens: 900 }));
        expect((await admit(store, key.id, T0, { estimatedTokens: 500 })).ok).toBe(false);
        await settle(store, first, T0, { promptTokens: 100, completionTokens: 100 });
        admitted(await admit(store, key.id, T0, { estimatedTokens: 500 }));
        expect(await admit(store, key.id, T0, { estimatedTokens: 1001 })).toMatchObject({
          ok: false,
          reason: 'daily_tokens',
          retryAfterMs: undefined,
        });
      });
    });

    describe('model allow-lists, checked in the same atomic step as the limits', () => {
      it("refuses a model outside the key's, the team's or the user's list, naming whose, and reserves nothing", async () => {
        const store = await open();
        const team = await store.createTeam({ name: 't', models: ['gpt-4o*', 'o3'] });
        const user = await store.createUser({ name: 'u', teamId: team.id, models: ['gpt-4o-mini', 'o3'] });
        const key = await keyIn(store, {
          teamId: team.id,
          userId: user.id,
          models: ['*mini', 'o3'],
          maxParallel: 1,
        });
        expect(await admit(store, key.id, T0, { model: 'gpt-4.1-mini' })).toMatchObject({
          ok: false,
          reason: 'model',
          subject: 'team',
          retryAfterMs: undefined,
        });
        expect(await admit(store, key.id, T0, { model: 'gpt-4o' })).toMatchObject({
          ok: false,
          reason: 'model',
          subject: 'key',
        });
        const other = await keyIn(store, { teamId: team.id, userId: user.id });
        expect(await admit(store, other.id, T0, { model: 'gpt-4o-2024-08-06' })).toMatchObject({
          ok: false,
          reason: 'model',
          subject: 'user',
        });
        expect(await admit(store, key.id, T0, { model: undefined })).toMatchObject({
          ok: false,
          reason: 'model',
        });
        // Nothing was reserved by the refusals: the one parallel slot is still free.
        admitted(await admit(store, key.id, T0, { model: 'gpt-4o-mini' }));
        expect(await admit(store, key.id, T0, { model: 'o3' })).toMatchObject({
          ok: false,
          reason: 'parallel',
        });
      });

      it('matches * as any run and every other character literally', async () => {
        const store = await open();
        const key = await keyIn(store, { models: ['gpt-4.o*', 'a*b*c', 'exact'] });
        const allowed = async (model: string) => (await admit(store, key.id, T0, { model })).ok;
        expect(await allowed('gpt-4.o-mini')).toBe(true);
        expect(await allowed('gpt-4xo')).toBe(false);
        expect(await allowed('abc')).toBe(true);
        expect(await allowed('a--b--c')).toBe(true);
        expect(await allowed('acb')).toBe(false);
        expect(await allowed('exact')).toBe(true);
        expect(await allowed('exact-not')).toBe(false);
        expect(await allowed('gpt-4.o%')).toBe(true);
      });

      it('sees a PATCH of models at the next admission', async () => {
        const store = await open();
        const key = await keyIn(store, { models: ['gpt-4o'] });
        expect((await admit(store, key.id, T0, { model: 'o3' })).ok).toBe(false);
        await store.updateKey(key.id, { models: ['o3'] });
        expect((await admit(store, key.id, T0, { model: 'o3' })).ok).toBe(true);
        await store.updateKey(key.id, { models: null });
        expect((await admit(store, key.id, T0, { model: 'anything' })).ok).toBe(true);
      });
    });

    describe('spend reports', () => {
      it('sums every token class a settlement reports, per group', async () => {
        const store = await open();
        const key = await keyIn(store, { id: 'classes' });
        const classes = {
          cachedTokens: 900,
          cacheWriteTokens: 50,
          reasoningTokens: 30,
          audioPromptTokens: 7,
          audioCompletionTokens: 3,
        };
        const run = async (settlement: Partial<Settlement>) =>
          settle(store, admitted(await admit(store, key.id, T0)), T0, settlement);
        await run({ costUsd: 0.5, promptTokens: 1000, completionTokens: 100, ...classes });
        await run({ costUsd: 0.25, promptTokens: 10, completionTokens: 10, cachedTokens: 5 });
        expect(await store.spend({ groupBy: 'key' })).toEqual([
          {
            group: 'classes',
            spendUsd: 0.75,
            requests: 2,
            promptTokens: 1010,
            completionTokens: 110,
            cachedTokens: 905,
            cacheWriteTokens: 50,
            reasoningTokens: 30,
            audioPromptTokens: 7,
            audioCompletionTokens: 3,
          },
        ]);
        await expect(run({ costUsd: 0, cachedTokens: -1 })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'cachedTokens',
        });
      });

      it('groups settled spend by key, team, user and model, between two UTC days inclusive', async () => {
        const store = await open();
        const team = await store.createTeam({ id: 'team-1', name: 't' });
        const user = await store.createUser({ id: 'user-1', name: 'u', teamId: team.id });
        const k1 = await keyIn(store, { id: 'key-1', teamId: team.id, userId: user.id });
        const k2 = await keyIn(store, { id: 'key-2', teamId: team.id });
        const k3 = await keyIn(store, { id: 'key-3' });
        const day1 = Date.parse('2026-05-01T12:00:00Z');
        const day2 = Date.parse('2026-05-02T23:59:59.999Z');
        const day3 = Date.parse('2026-05-03T00:00:00Z');
        const run = async (keyId: string, atMs: number, settlement: Partial<Settlement>) =>
          settle(store, admitted(await admit(store, keyId, atMs)), atMs, settlement);
        await run(k1.id, day1, { model: 'gpt-4o', costUsd: 1, promptTokens: 10, completionTokens: 20 });
        await run(k2.id, day2, { model: 'gpt-4o-mini', costUsd: 0.5, promptTokens: 5, completionTokens: 5 });
        await run(k3.id, day3, { model: 'gpt-4o', costUsd: 0.25, promptTokens: 1, completionTokens: 2 });
        await run(k1.id, day3, { model: undefined, costUsd: 0 });
        const row = (
          group: string | null,
          spendUsd: number,
          requests: number,
          promptTokens: number,
          completionTokens: number,
        ) => ({
          group,
          spendUsd,
          requests,
          promptTokens,
          completionTokens,
          ...NO_TOKEN_CLASSES,
        });
        expect(byGroup(await store.spend({ groupBy: 'key' }))).toEqual([
          row('key-1', 1, 2, 10, 20),
          row('key-2', 0.5, 1, 5, 5),
          row('key-3', 0.25, 1, 1, 2),
        ]);
        expect(byGroup(await store.spend({ groupBy: 'team' }))).toEqual([
          row('team-1', 1.5, 3, 15, 25),
          row(null, 0.25, 1, 1, 2),
        ]);
        expect(byGroup(await store.spend({ groupBy: 'user' }))).toEqual([
          row('user-1', 1, 2, 10, 20),
          row(null, 0.75, 2, 6, 7),
        ]);
        expect(byGroup(await store.spend({ groupBy: 'model' }))).toEqual([
          row('gpt-4o', 1.25, 2, 11, 22),
          row('gpt-4o-mini', 0.5, 1, 5, 5),
          row(null, 0, 1, 0, 0),
        ]);
        const midDay2 = Date.parse('2026-05-02T10:00:00Z');
        expect(await store.spend({ groupBy: 'key', fromMs: midDay2, toMs: midDay2 })).toEqual([
          row('key-2', 0.5, 1, 5, 5),
        ]);
        expect(byGroup(await store.spend({ groupBy: 'key', fromMs: midDay2 }))).toEqual([
          row('key-1', 0, 1, 0, 0),
          row('key-2', 0.5, 1, 5, 5),
          row('key-3', 0.25, 1, 1, 2),
        ]);
        expect(await store.spend({ groupBy: 'team', toMs: Date.parse('2026-05-01T23:59:59.999Z') })).toEqual([
          row('team-1', 1, 1, 10, 20),
        ]);
        expect(await store.spend({ groupBy: 'key', fromMs: Date.parse('2026-06-01T00:00:00Z') })).toEqual([]);
        await expect(store.spend({ groupBy: 'day' as 'key' })).rejects.toMatchObject({
          code: 'invalid_field',
          field: 'groupBy',
        });
      });
    });

    describe('failed-auth limiter', () => {
      it('blocks an address after 5 failures until its 15-minute window ends, without extending it', async () => {
        const store = await open();
        const address = '203.0.113.7';
        for (let i = 0; i < 4; i++) {
          expect(await store.recordAuthFailure(address, T0 + i * 1000)).toEqual({
            blocked: false,
            retryAfterMs: 0,
          });
        }
        expect(await store.authFailureState(address, T0 + 4000)).toEqual({ blocked: false, retryAfterMs: 0 });
        expect(await store.recordAuthFailure(address, T0 + 4000)).toEqual({
          blocked: true,
          retryAfterMs: 896_000,
        });
        for (let i = 0; i < 10; i++) {
          expect((await store.recordAuthFailure(address, T0 + 10_000 + i)).blocked).toBe(true);
        }
        expect(await store.authFailureState(address, T0 + 899_999)).toEqual({
          blocked: true,
          retryAfterMs: 1,
        });
        expect(await store.authFailureState(address, T0 + 900_000)).toEqual({
          blocked: false,
          retryAfterMs: 0,
        });
        expect(await store.recordAuthFailure(address, T0 + 900_000)).toEqual({
          blocked: false,
          retryAfterMs: 0,
        });
        expect(await store.authFailureState('198.51.100.1', T0)).toEqual({ blocked: false, retryAfterMs: 0 });
      });

      it('keeps an address blocked when it then presents a correct key (there is no reset)', async () => {
        const store = await open({ authFailures: { max: 2, windowMs: 10_000 } });
        const key = await keyIn(store);
        await store.recordAuthFailure('a', T0);
        expect(await store.recordAuthFailure('a', T0 + 1)).toEqual({ blocked: true, retryAfterMs: 9_999 });
        expect(await store.findKeyByHash(key.hash)).toBeDefined();
        await settle(store, admitted(await admit(store, key.id, T0 + 2)), T0 + 2);
        expect(await store.authFailureState('a', T0 + 3)).toEqual({ blocked: true, retryAfterMs: 9_997 });
        expect((await store.authFailureState('a', T0 + 10_000)).blocked).toBe(false);
      });

      it('tracks a bounded number of addresses: one pushed out starts over', async () => {
        const store = await open({ authFailures: { max: 2, maxTrackedAddresses: 2 } });
        await store.recordAuthFailure('a', T0);
        expect((await store.recordAuthFailure('a', T0)).blocked).toBe(true);
        await store.recordAuthFailure('b', T0 + 1);
        await store.recordAuthFailure('c', T0 + 2);
        expect((await store.authFailureState('a', T0 + 3)).blocked).toBe(false);
        expect((await store.recordAuthFailure('a', T0 + 3)).blocked).toBe(false);
      });
    });

    it('closes idempotently, also twice at once', async () => {
      const store = await open();
      await Promise.all([store.close(), store.close()]);
      await store.close();
    });
  });
}
