// managementRouter against real Express apps (5 and 4) and a real MemoryKeyStore on a fixed clock:
// the admin guard, keys shown once and stored as hashes, strict bodies, CRUD, spend reports.
import { describe, expect, it, jest } from '@jest/globals';
import request from 'supertest';
import { hashApiKey } from '../lib/keys/hash.js';
import {
  managementRouter,
  parseIsoInstant,
  type ManagementRouterOptions,
} from '../lib/keys/management-router.js';
import { MemoryKeyStore } from '../lib/keys/memory-store.js';
import type { Logger } from '../lib/log.js';
import { expressVersions } from './support/express-versions.js';

type ExpressFactory = (typeof expressVersions)[number][1];
type App = ReturnType<ExpressFactory>;

const ADMIN_KEY = 'admin-key-0123456789abcdef';
const PEPPER = 'pepper-for-management-tests';
const NOW_MS = Date.parse('2025-03-10T12:00:00.000Z');
const DAY_MS = 86_400_000;

/** A logger that records every event. */
function recordingLogger() {
  const error = jest.fn<Logger['error']>();
  return { logger: { error } satisfies Logger, events: () => error.mock.calls.map(([, fields]) => fields) };
}

/** An app with the router under `/admin`, its store, and a fixed clock. */
function setup(express: ExpressFactory, overrides: Partial<ManagementRouterOptions> = {}) {
  const clock = () => NOW_MS;
  const store = new MemoryKeyStore({ clock, pepper: PEPPER });
  const { logger, events } = recordingLogger();
  const app = express();
  app.use(
    '/admin',
    managementRouter({ store, adminKey: ADMIN_KEY, pepper: PEPPER, clock, logger, ...overrides }),
  );
  return { app, store, events, admin: adminClient(app) };
}

/** Requests carrying the admin key. */
function adminClient(app: App) {
  const auth = `Bearer ${ADMIN_KEY}`;
  return {
    get: (path: string) => request(app).get(`/admin${path}`).set('Authorization', auth),
    post: (path: string, body?: object) => {
      const req = request(app).post(`/admin${path}`).set('Authorization', auth);
      return body === undefined ? req : req.send(body);
    },
    patch: (path: string, body: object) =>
      request(app).patch(`/admin${path}`).set('Authorization', auth).send(body),
    delete: (path: string) => request(app).delete(`/admin${path}`).set('Authorization', auth),
  };
}

type Admin = ReturnType<typeof adminClient>;

/** Creates a key through the API and returns its answer body. */
async function createKey(admin: Admin, body: object = { name: 'ci' }) {
  const res = await admin.post('/keys', body);
  expect(res.status).toBe(201);
  return res.body as { id: string; key: string; prefix: string } & Record<string, unknown>;
}

/** Charges `costUsd` to `keyId` at `nowMs`, the way keyAuth and the relay do. */
async function charge(store: MemoryKeyStore, keyId: string, model: string, costUsd: number, nowMs: number) {
  const admission = await store.admit({
    keyId,
    model,
    estimatedCostUsd: costUsd,
    estimatedTokens: 30,
    nowMs,
  });
  if (!admission.ok) throw new Error(`admission refused: ${admission.reason}`);
  await store.settle(admission.reservationId, {
    model,
    costUsd,
    promptTokens: 10,
    completionTokens: 20,
    nowMs,
  });
}

function byGroup(rows: { group: string | null }[]) {
  return [...rows].sort((a, b) => String(a.group).localeCompare(String(b.group)));
}

describe.each(expressVersions)('managementRouter on %s', (_label, express) => {
  describe('admin guard', () => {
    it.each([
      ['no Authorization header', undefined],
      ['a Basic scheme', 'Basic YWRtaW46YWRtaW4='],
      ['a bare Bearer', 'Bearer'],
      ['a Bearer with only spaces', 'Bearer    '],
      ['a Bearer token with inner spaces', `Bearer ${ADMIN_KEY} extra`],
    ])('answers 401 invalid_api_key to %s', async (_case, authorization) => {
      const { app } = setup(express);
      const req = request(app).get('/admin/keys');
      const res = await (authorization === undefined ? req : req.set('Authorization', authorization));
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
      expect(res.headers['www-authenticate']).toBe('Bearer');
    });

    it('answers 403 admin_required to a normal client key', async () => {
      const { app, admin } = setup(express);
      const { key } = await createKey(admin);
      const res = await request(app).get('/admin/keys').set('Authorization', `Bearer ${key}`);
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ type: 'permission_error', code: 'admin_required' });
    });

    it('answers 403 to a bearer that is the admin key with one character changed', async () => {
      const { app } = setup(express);
      const near = `${ADMIN_KEY.slice(0, -1)}X`;
      const res = await request(app).get('/admin/keys').set('Authorization', `Bearer ${near}`);
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('admin_required');
    });

    it('lets the admin key through, with any case of the Bearer scheme', async () => {
      const { app } = setup(express);
      const res = await request(app).get('/admin/keys').set('Authorization', `bearer ${ADMIN_KEY}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ data: [] });
      expect(res.headers['cache-control']).toBe('no-store');
    });

    it('refuses before reading the body', async () => {
      const { app, store } = setup(express);
      const res = await request(app).post('/admin/keys').send({ name: 'sneaky' });
      expect(res.status).toBe(401);
      expect(await store.listKeys()).toEqual([]);
    });

    it('guards only its own paths when mounted at the root', async () => {
      const store = new MemoryKeyStore({ clock: () => NOW_MS });
      const app = express();
      app.use(managementRouter({ store, adminKey: ADMIN_KEY }));
      app.get('/health', (_req, res) => {
        res.json({ ok: true });
      });
      expect((await request(app).get('/health')).status).toBe(200);
      expect((await request(app).get('/keys')).status).toBe(401);
    });
  });

  describe('keys', () => {
    it('creates a key and returns its plaintext once, starting with sk-llmux- and at least 40 characters', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys', { name: 'ci' });
      expect(res.status).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers.location).toBe(`/admin/keys/${res.body.id}`);
      const { key, prefix, id } = res.body as { key: string; prefix: string; id: string };
      expect(key.startsWith('sk-llmux-')).toBe(true);
      expect(key.length).toBeGreaterThanOrEqual(40);
      expect(prefix).toBe(key.slice(0, 13));
      expect(res.body).toMatchObject({
        name: 'ci',
        revoked: false,
        spendUsd: 0,
        createdAt: new Date(NOW_MS).toISOString(),
        expiresAt: null,
      });
      expect(res.body).not.toHaveProperty('hash');

      const again = await admin.get(`/keys/${id}`);
      expect(again.status).toBe(200);
      expect(again.body).not.toHaveProperty('key');
    });

    it('gives every new key a different secret', async () => {
      const { admin } = setup(express);
      const first = await createKey(admin);
      const second = await createKey(admin);
      expect(first.key).not.toBe(second.key);
      expect(first.id).not.toBe(second.id);
    });

    it('stores only hashApiKey(plaintext, pepper)', async () => {
      const { admin, store } = setup(express);
      const { id, key } = await createKey(admin);
      const stored = await store.getKey(id);
      expect(stored?.hash).toBe(hashApiKey(key, PEPPER));
      expect(JSON.stringify(stored)).not.toContain(key);
      expect((await store.findKeyByHash(hashApiKey(key, PEPPER)))?.id).toBe(id);
    });

    it('never includes the hash or the secret anywhere in GET answers', async () => {
      const { admin, store } = setup(express);
      const { id, key } = await createKey(admin, { name: 'ci', metadata: { owner: 'ops' } });
      const hash = (await store.getKey(id))!.hash;
      for (const path of ['/keys', `/keys/${id}`]) {
        const res = await admin.get(path);
        expect(res.status).toBe(200);
        expect(res.text).not.toContain(key);
        expect(res.text).not.toContain(hash);
        expect(res.text).not.toContain('"hash"');
        expect(res.text).not.toContain('"key"');
      }
    });

    it('maps every accepted field to the public view', async () => {
      const { admin } = setup(express);
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      await admin.post('/users', { id: 'ada', name: 'Ada', team: 'research' }).expect(201);
      const created = await createKey(admin, {
        name: '  nightly  ',
        team: 'research',
        user: 'ada',
        models: ['gpt-4o*', 'o3-mini'],
        budgetUsd: 12.5,
        rpm: 60,
        tpm: 90_000,
        maxParallel: 4,
        dailyRequests: 1000,
        dailyTokens: 2_000_000,
        expiresAt: '2025-06-01T00:00:00+02:00',
        metadata: { ticket: 'OPS-1' },
      });
      const res = await admin.get(`/keys/${created.id}`);
      expect(res.body).toEqual({
        id: created.id,
        name: 'nightly',
        prefix: created.prefix,
        team: 'research',
        user: 'ada',
        models: ['gpt-4o*', 'o3-mini'],
        budgetUsd: 12.5,
        spendUsd: 0,
        spendByModel: {},
        rpm: 60,
        tpm: 90_000,
        maxParallel: 4,
        dailyRequests: 1000,
        dailyTokens: 2_000_000,
        expiresAt: '2025-05-31T22:00:00.000Z',
        revoked: false,
        createdAt: new Date(NOW_MS).toISOString(),
        metadata: { ticket: 'OPS-1' },
      });
    });

    it('lists keys', async () => {
      const { admin } = setup(express);
      const first = await createKey(admin, { name: 'one' });
      const second = await createKey(admin, { name: 'two' });
      const res = await admin.get('/keys');
      expect(res.status).toBe(200);
      const ids = (res.body.data as { id: string }[]).map((k) => k.id).sort();
      expect(ids).toEqual([first.id, second.id].sort());
    });

    it('changes limits with PATCH and clears them with null', async () => {
      const { admin, store } = setup(express);
      const { id } = await createKey(admin, { name: 'ci', rpm: 10, budgetUsd: 5, models: ['gpt-4o'] });
      const raised = await admin.patch(`/keys/${id}`, { rpm: 100, tpm: 5000, name: 'ci-2' });
      expect(raised.status).toBe(200);
      expect(raised.body).toMatchObject({ rpm: 100, tpm: 5000, name: 'ci-2', budgetUsd: 5 });

      const cleared = await admin.patch(`/keys/${id}`, { rpm: null, budgetUsd: null, models: null });
      expect(cleared.status).toBe(200);
      expect(cleared.body).toMatchObject({ rpm: null, budgetUsd: null, models: null, tpm: 5000 });
      const stored = await store.getKey(id);
      expect(stored?.rpm).toBeUndefined();
      expect(stored?.budgetUsd).toBeUndefined();
    });

    it('sets and clears expiresAt with PATCH, a past instant included', async () => {
      const { admin } = setup(express);
      const { id } = await createKey(admin);
      const past = await admin.patch(`/keys/${id}`, { expiresAt: '2025-03-01' });
      expect(past.body.expiresAt).toBe('2025-03-01T00:00:00.000Z');
      const cleared = await admin.patch(`/keys/${id}`, { expiresAt: null });
      expect(cleared.body.expiresAt).toBeNull();
    });

    it('refuses a new key that is already expired', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys', { name: 'ci', expiresAt: new Date(NOW_MS).toISOString() });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'expiresAt' });
    });

    it.each(['team', 'user', 'id'])('refuses to change %s of an existing key', async (field) => {
      const { admin } = setup(express);
      const { id } = await createKey(admin);
      const res = await admin.patch(`/keys/${id}`, { [field]: 'other' });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: field });
    });

    it('revokes with DELETE and answers the view showing revoked: true', async () => {
      const { admin, store } = setup(express);
      const { id } = await createKey(admin);
      const res = await admin.delete(`/keys/${id}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id, revoked: true });
      expect(res.body).not.toHaveProperty('hash');
      expect((await store.getKey(id))?.revoked).toBe(true);
      // Revocation is permanent and repeating it is harmless.
      expect((await admin.delete(`/keys/${id}`)).body.revoked).toBe(true);
      expect((await admin.get(`/keys/${id}`)).body.revoked).toBe(true);
    });

    it('refuses a key referencing an unknown team with 400 param team', async () => {
      const { admin, store } = setup(express);
      const res = await admin.post('/keys', { name: 'ci', team: 'nope' });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'team' });
      expect(await store.listKeys()).toEqual([]);
    });

    it('refuses a key referencing an unknown user with 400 param user', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys', { name: 'ci', user: 'nobody' });
      expect(res.status).toBe(400);
      expect(res.body.error.param).toBe('user');
    });

    it('answers 409 duplicate_id to a second key with the same id', async () => {
      const { admin } = setup(express);
      await createKey(admin, { id: 'ci', name: 'ci' });
      const res = await admin.post('/keys', { id: 'ci', name: 'again' });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'duplicate_id', param: 'id' });
    });
  });

  describe('teams and users', () => {
    it('creates, reads, lists, patches and deletes a team', async () => {
      const { admin } = setup(express);
      const created = await admin.post('/teams', { id: 'research', name: 'Research', budgetUsd: 100 });
      expect(created.status).toBe(201);
      expect(created.headers.location).toBe('/admin/teams/research');
      expect(created.body).toEqual({
        id: 'research',
        name: 'Research',
        models: null,
        budgetUsd: 100,
        spendUsd: 0,
        spendByModel: {},
        rpm: null,
        tpm: null,
        createdAt: new Date(NOW_MS).toISOString(),
        metadata: null,
      });
      expect((await admin.get('/teams/research')).body).toEqual(created.body);
      expect((await admin.get('/teams')).body).toEqual({ data: [created.body] });

      const patched = await admin.patch('/teams/research', { rpm: 600, budgetUsd: null, models: ['gpt-4o'] });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({ rpm: 600, budgetUsd: null, models: ['gpt-4o'] });

      const deleted = await admin.delete('/teams/research');
      expect(deleted.status).toBe(200);
      expect(deleted.body).toEqual({ id: 'research', deleted: true });
      expect((await admin.get('/teams/research')).status).toBe(404);
    });

    it('generates a team id when none is given', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/teams', { name: 'Ops' });
      expect(res.status).toBe(201);
      expect(typeof res.body.id).toBe('string');
      expect(res.body.id.length).toBeGreaterThan(0);
    });

    it('creates a user in a team, moves it out with team: null, and deletes it', async () => {
      const { admin } = setup(express);
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      const created = await admin.post('/users', { id: 'ada', name: 'Ada', team: 'research', tpm: 1000 });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ id: 'ada', name: 'Ada', team: 'research', tpm: 1000 });
      expect((await admin.get('/users')).body.data).toHaveLength(1);

      const moved = await admin.patch('/users/ada', { team: null });
      expect(moved.status).toBe(200);
      expect(moved.body.team).toBeNull();

      expect((await admin.delete('/users/ada')).body).toEqual({ id: 'ada', deleted: true });
      expect((await admin.get('/users/ada')).status).toBe(404);
    });

    it('refuses a user referencing an unknown team with 400 param team', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/users', { name: 'Ada', team: 'nope' });
      expect(res.status).toBe(400);
      expect(res.body.error.param).toBe('team');
    });

    it('answers 409 in_use when deleting a team that a key still references', async () => {
      const { admin } = setup(express);
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      await createKey(admin, { name: 'ci', team: 'research' });
      const res = await admin.delete('/teams/research');
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('in_use');
      expect((await admin.get('/teams/research')).status).toBe(200);
    });

    it('answers 409 duplicate_id to a second team with the same id', async () => {
      const { admin } = setup(express);
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      const res = await admin.post('/teams', { id: 'research', name: 'Again' });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'duplicate_id', param: 'id' });
    });
  });

  describe('unknown ids and routes', () => {
    it.each([
      ['GET', '/keys/nope'],
      ['PATCH', '/keys/nope'],
      ['DELETE', '/keys/nope'],
      ['GET', '/teams/nope'],
      ['PATCH', '/teams/nope'],
      ['DELETE', '/teams/nope'],
      ['GET', '/users/nope'],
      ['PATCH', '/users/nope'],
      ['DELETE', '/users/nope'],
    ])('answers 404 not_found to %s %s', async (method, path) => {
      const { admin } = setup(express);
      const res =
        method === 'GET'
          ? await admin.get(path)
          : method === 'PATCH'
            ? await admin.patch(path, { name: 'x' })
            : await admin.delete(path);
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'not_found' });
    });

    it('answers 405 with Allow to a method a route does not serve', async () => {
      const { app } = setup(express);
      const res = await request(app).put('/admin/keys').set('Authorization', `Bearer ${ADMIN_KEY}`).send({});
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe('GET, POST');
      expect(res.body.error.code).toBe('method_not_allowed');
    });

    it('answers a JSON 404 to a deeper path under its own', async () => {
      const { admin } = setup(express);
      const res = await admin.get('/keys/a/b');
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body.error.code).toBe('not_found');
    });
  });

  describe('bodies', () => {
    it.each([
      ['POST', '/keys', 'owner'],
      ['POST', '/keys', 'spendUsd'],
      ['POST', '/keys', 'hash'],
      ['POST', '/keys', '__proto__'],
      ['POST', '/teams', 'maxParallel'],
      ['POST', '/users', 'expiresAt'],
      ['PATCH', '/keys/:id', 'revoked'],
      ['PATCH', '/teams/research', 'spendUsd'],
    ])('answers 400 naming the unknown field: %s %s with %s', async (method, path, field) => {
      const { admin } = setup(express);
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      const { id } = await createKey(admin);
      const body = JSON.parse(`{"name":"x",${JSON.stringify(field)}:1}`) as object;
      const target = path.replace(':id', id);
      const res = method === 'POST' ? await admin.post(target, body) : await admin.patch(target, body);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: field,
      });
    });

    it.each([
      ['name', 42],
      ['name', ''],
      ['name', '   '],
      ['name', null],
      ['name', 'x'.repeat(201)],
      ['id', 'has space'],
      ['id', 'a/b'],
      ['id', 7],
      ['team', 5],
      ['team', ''],
      ['user', ['ada']],
      ['models', 'gpt-4o'],
      ['models', ['gpt-4o', 3]],
      ['models', ['']],
      ['budgetUsd', '10'],
      ['budgetUsd', -1],
      ['budgetUsd', true],
      ['rpm', 1.5],
      ['rpm', 0],
      ['rpm', '60'],
      ['tpm', -5],
      ['maxParallel', 2 ** 60],
      ['dailyRequests', {}],
      ['dailyTokens', false],
      ['expiresAt', 1767225600000],
      ['expiresAt', 'tomorrow'],
      ['expiresAt', '2026-01-01T00:00:00'],
      ['expiresAt', '2026-02-30'],
      ['expiresAt', '2026-13-01T00:00:00Z'],
      ['metadata', 'ops'],
      ['metadata', ['ops']],
    ])('answers 400 invalid_request with param %s for %j', async (field, value) => {
      const { admin, store } = setup(express);
      const body: Record<string, unknown> = { name: 'ci', [field]: value };
      const res = await admin.post('/keys', body);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: field,
      });
      expect(await store.listKeys()).toEqual([]);
    });

    it('requires a name at creation', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/teams', { budgetUsd: 3 });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'name' });
    });

    it('treats a POST without a body as an empty object', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys');
      expect(res.status).toBe(400);
      expect(res.body.error.param).toBe('name');
    });

    it('refuses invalid JSON with 400 invalid_json', async () => {
      const { app } = setup(express);
      const res = await request(app)
        .post('/admin/keys')
        .set('Authorization', `Bearer ${ADMIN_KEY}`)
        .set('Content-Type', 'application/json')
        .send('{"name":');
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_json');
    });

    it('refuses a JSON array body', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys', [{ name: 'ci' }]);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    });

    it('refuses a body over 64 KiB with 413', async () => {
      const { admin } = setup(express);
      const res = await admin.post('/keys', { name: 'ci', metadata: { blob: 'x'.repeat(70 * 1024) } });
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('body_too_large');
    });

    it('refuses a non-JSON content type with 415', async () => {
      const { app } = setup(express);
      const res = await request(app)
        .post('/admin/keys')
        .set('Authorization', `Bearer ${ADMIN_KEY}`)
        .set('Content-Type', 'text/plain')
        .send('name=ci');
      expect(res.status).toBe(415);
      expect(res.body.error.code).toBe('unsupported_media_type');
    });
  });

  describe('spend', () => {
    /** Key A (no team) spends $1 on gpt-4o on 03-10; key B (research/ada) $2 on gpt-4o-mini on 03-11. */
    async function withSpend() {
      const setupResult = setup(express);
      const { admin, store } = setupResult;
      await admin.post('/teams', { id: 'research', name: 'Research' }).expect(201);
      await admin.post('/users', { id: 'ada', name: 'Ada', team: 'research' }).expect(201);
      const a = await createKey(admin, { id: 'key-a', name: 'a' });
      const b = await createKey(admin, { id: 'key-b', name: 'b', team: 'research', user: 'ada' });
      await charge(store, a.id, 'gpt-4o', 1, NOW_MS);
      await charge(store, b.id, 'gpt-4o-mini', 2, NOW_MS + DAY_MS);
      return setupResult;
    }

    const row = (group: string | null, spendUsd: number) => ({
      group,
      spendUsd,
      requests: 1,
      promptTokens: 10,
      completionTokens: 20,
      cachedTokens: 0,
      cacheWriteTokens: 0,
      reasoningTokens: 0,
      audioPromptTokens: 0,
      audioCompletionTokens: 0,
    });

    it.each([
      ['key', [row('key-a', 1), row('key-b', 2)]],
      ['team', [row('research', 2), row(null, 1)]],
      ['user', [row('ada', 2), row(null, 1)]],
      ['model', [row('gpt-4o', 1), row('gpt-4o-mini', 2)]],
    ])('groups spend by %s', async (groupBy, expected) => {
      const { admin } = await withSpend();
      const res = await admin.get(`/spend?groupBy=${groupBy}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ groupBy, from: null, to: null });
      expect(byGroup(res.body.data)).toEqual(byGroup(expected));
    });

    it('keeps only the UTC days between from and to', async () => {
      const { admin } = await withSpend();
      const second = await admin.get('/spend?groupBy=key&from=2025-03-11');
      expect(second.body).toMatchObject({ from: '2025-03-11T00:00:00.000Z', to: null });
      expect(second.body.data).toEqual([row('key-b', 2)]);

      const first = await admin.get('/spend?groupBy=model&from=2025-03-10T00:00:00Z&to=2025-03-10T23:59:59Z');
      expect(first.body.data).toEqual([row('gpt-4o', 1)]);

      const none = await admin.get('/spend?groupBy=key&from=2025-04-01&to=2025-04-30');
      expect(none.body.data).toEqual([]);
    });

    it('reads a zone offset whose + was not percent-encoded', async () => {
      const { admin } = await withSpend();
      const res = await admin.get('/spend?groupBy=key&from=2025-03-11T01:00:00+02:00');
      expect(res.status).toBe(200);
      expect(res.body.from).toBe('2025-03-10T23:00:00.000Z');
      expect(byGroup(res.body.data)).toEqual([row('key-a', 1), row('key-b', 2)]);
    });

    it('groups by key when groupBy is not given', async () => {
      const { admin } = await withSpend();
      const res = await admin.get('/spend');
      expect(res.body.groupBy).toBe('key');
      expect(res.body.data).toHaveLength(2);
    });

    it.each([
      ['groupBy=team,user', 'groupBy'],
      ['groupBy=KEY', 'groupBy'],
      ['groupBy=key&groupBy=team', 'groupBy'],
      ['from=yesterday', 'from'],
      ['from=2025-02-30', 'from'],
      ['from=2025-03-10T10:00:00', 'from'],
      ['to=1741600000000', 'to'],
      ['from=2025-03-12&to=2025-03-10', 'from'],
      ['team=research', 'team'],
    ])('answers 400 naming the parameter for ?%s', async (query, param) => {
      const { admin } = setup(express);
      const res = await admin.get(`/spend?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param });
    });
  });

  describe('failures', () => {
    it('answers 500 internal_error in the OpenAI shape when the store fails, and logs it once', async () => {
      const { app, store, events } = setup(express);
      store.listKeys = async () => {
        throw new Error('disk on fire');
      };
      const res = await request(app).get('/admin/keys').set('Authorization', `Bearer ${ADMIN_KEY}`);
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({
        error: {
          message: 'The server had an error while processing your request.',
          type: 'server_error',
          code: 'internal_error',
          param: null,
        },
      });
      expect(events()).toHaveLength(1);
      expect(JSON.stringify(events())).not.toContain(ADMIN_KEY);
    });

    it('answers 500 when a handler throws synchronously', async () => {
      const { app, store } = setup(express);
      store.getKey = () => {
        throw new Error('sync crash');
      };
      const res = await request(app).get('/admin/keys/any').set('Authorization', `Bearer ${ADMIN_KEY}`);
      expect(res.status).toBe(500);
      expect(res.body.error.code).toBe('internal_error');
    });
  });
});

describe('managementRouter options', () => {
  const store = new MemoryKeyStore({ clock: () => NOW_MS });

  it.each([
    ['adminKey shorter than 16 characters', { store, adminKey: 'short' }, /adminKey/],
    ['adminKey not a string', { store, adminKey: 1234567890123456 }, /adminKey/],
    ['a missing store', { adminKey: ADMIN_KEY }, /store/],
    ['a store without methods', { store: {}, adminKey: ADMIN_KEY }, /store/],
    ['an empty pepper', { store, adminKey: ADMIN_KEY, pepper: '' }, /pepper/],
    ['a clock that is not a function', { store, adminKey: ADMIN_KEY, clock: 5 }, /clock/],
    ['a logger without error()', { store, adminKey: ADMIN_KEY, logger: {} }, /logger/],
  ])('throws a TypeError naming the option for %s', (_case, options, message) => {
    expect(() => managementRouter(options as unknown as ManagementRouterOptions)).toThrow(TypeError);
    expect(() => managementRouter(options as unknown as ManagementRouterOptions)).toThrow(message);
  });

  it('never echoes the adminKey in its TypeError', () => {
    expect(() => managementRouter({ store, adminKey: 'tiny-secret' })).toThrow(/11 characters/);
    expect(() => managementRouter({ store, adminKey: 'tiny-secret' })).not.toThrow(/tiny-secret/);
  });
});

describe('parseIsoInstant', () => {
  it.each([
    ['2025-03-10', Date.UTC(2025, 2, 10)],
    ['2025-03-10T12:00Z', Date.UTC(2025, 2, 10, 12)],
    ['2025-03-10T12:00:30Z', Date.UTC(2025, 2, 10, 12, 0, 30)],
    ['2025-03-10T12:00:30.5Z', Date.UTC(2025, 2, 10, 12, 0, 30, 500)],
    ['2025-03-10T12:00:30.123456Z', Date.UTC(2025, 2, 10, 12, 0, 30, 123)],
    ['2025-03-10T12:00:00+02:00', Date.UTC(2025, 2, 10, 10)],
    ['2025-03-10T00:30:00-05:30', Date.UTC(2025, 2, 10, 6)],
    ['2024-02-29', Date.UTC(2024, 1, 29)],
    ['0099-01-01', Date.parse('0099-01-01T00:00:00Z')],
  ])('reads %s', (text, ms) => {
    expect(parseIsoInstant(text)).toBe(ms);
  });

  it.each([
    '',
    'tomorrow',
    '2025-03-10T12:00:00',
    '2025-02-29',
    '2025-04-31',
    '2025-00-10',
    '2025-03-10T24:00:00Z',
    '2025-03-10T12:60:00Z',
    '2025-03-10T12:00:00+24:00',
    '2025-3-10',
    '+002025-03-10',
    '2025-03-10 12:00:00Z',
    'March 10, 2025',
    '1741600000000',
  ])('refuses %j', (text) => {
    expect(parseIsoInstant(text)).toBeUndefined();
  });
});
