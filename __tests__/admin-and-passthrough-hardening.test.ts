// The management API and the passthrough under attack: unreachable ids, admin keys that can never
// match, a Redis that refuses writes, guessing the admin key, and client headers that must not
// travel next to the relay's key.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import request from 'supertest';
import { managementRouter, MemoryKeyStore, passthrough } from '../lib/index.js';
import { RedisKeyStore } from '../lib/redis.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { requireRedis } from './support/redis.js';

const redis = await requireRedis();
const ADMIN = 'admin-key-for-tests-0123456789';

function admin(store = new MemoryKeyStore(), clock = () => Date.now()) {
  const app = express().use('/admin', managementRouter({ store, adminKey: ADMIN, clock }));
  return { app, store };
}

describe('management API ids', () => {
  it.each([['.'], ['..']])('refuses the id %j, which no URL could reach', async (id) => {
    const { app } = admin();
    const res = await request(app)
      .post('/admin/teams')
      .set('authorization', `Bearer ${ADMIN}`)
      .send({ id, name: 'dots' });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe('id');
  });

  it('keeps ids with dots that are reachable', async () => {
    const { app } = admin();
    const created = await request(app)
      .post('/admin/teams')
      .set('authorization', `Bearer ${ADMIN}`)
      .send({ id: 'team.v2', name: 'dots' });
    expect(created.status).toBe(201);
    expect(
      (await request(app).get('/admin/teams/team.v2').set('authorization', `Bearer ${ADMIN}`)).status,
    ).toBe(200);
  });
});

describe('the admin key', () => {
  it.each([['admin key with spaces 0123'], [' leading-space-0123456789'], ['tab\tinside-0123456789']])(
    'refuses %j at construction: it could never match a bearer token',
    (adminKey) => {
      expect(() => managementRouter({ store: new MemoryKeyStore(), adminKey })).toThrow(TypeError);
      expect(() => managementRouter({ store: new MemoryKeyStore(), adminKey })).not.toThrow(adminKey.trim());
    },
  );

  it('limits wrong admin keys from one address, and always lets the right one in', async () => {
    let now = Date.parse('2026-12-01T00:00:00Z');
    const { app } = admin(new MemoryKeyStore(), () => now);
    const guess = (key: string) => request(app).get('/admin/keys').set('authorization', `Bearer ${key}`);
    for (let i = 0; i < 5; i++) expect((await guess(`wrong-admin-key-${i}-0123456789`)).status).toBe(403);
    const blocked = await guess('wrong-admin-key-5-0123456789');
    expect(blocked.status).toBe(429);
    expect(blocked.body.error.code).toBe('too_many_auth_failures');
    expect((await guess(ADMIN)).status).toBe(200);
    now += 15 * 60_000 + 1;
    expect((await guess('wrong-admin-key-6-0123456789')).status).toBe(403);
  });

  it('counts admin failures apart from client-key failures of the same address', async () => {
    const { app, store } = admin();
    for (let i = 0; i < 5; i++) await store.recordAuthFailure('::ffff:127.0.0.1', Date.now());
    for (let i = 0; i < 5; i++) await store.recordAuthFailure('127.0.0.1', Date.now());
    const res = await request(app)
      .get('/admin/keys')
      .set('authorization', 'Bearer wrong-admin-key-0123456789');
    expect(res.status).toBe(403);
  });
});

/** A real redis-server on a free port that refuses every write (maxmemory of 1 byte). */
async function fullRedis(): Promise<{ url: string; child: ChildProcess }> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'].concat([
      '--maxmemory',
      '1',
      '--maxmemory-policy',
      'noeviction',
    ]),
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return { url: `redis://127.0.0.1:${port}`, child };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}

redis.describe('the management API on a Redis that refuses writes', () => {
  let full: { url: string; child: ChildProcess };
  beforeAll(async () => {
    full = await fullRedis();
  });
  afterAll(() => {
    full.child.kill('SIGKILL');
  });

  it('answers 503 store_unavailable (OOM), not 500', async () => {
    const store = new RedisKeyStore({
      url: full.url,
      prefix: `llmux-test:oom:${randomBytes(4).toString('hex')}:`,
    });
    const { app } = admin(store as never);
    const res = await request(app)
      .post('/admin/teams')
      .set('authorization', `Bearer ${ADMIN}`)
      .send({ name: 'full' });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('store_unavailable');
    await store.close();
  });
});

describe('the passthrough', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it('forwards only the allow-list: no organisation, project, forwarded-for or cookie of the client', async () => {
    const app = express().get(
      '/v1/models',
      passthrough({ target: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } }),
    );
    const res = await request(app)
      .get('/v1/models')
      .set('Authorization', 'Bearer sk-client')
      .set('OpenAI-Organization', 'org-client')
      .set('OpenAI-Project', 'proj-client')
      .set('X-Forwarded-For', '203.0.113.9')
      .set('OpenAI-Beta', 'assistants=v2')
      .set('Cookie', 'session=1');
    expect(res.status).toBe(200);
    const seen = mock.requests.at(-1)!.headers;
    expect(seen.authorization).toBe('Bearer sk-up');
    expect(seen['openai-organization']).toBeUndefined();
    expect(seen['openai-project']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBeUndefined();
    expect(seen.cookie).toBeUndefined();
    expect(seen['openai-beta']).toBe('assistants=v2');
  });

  it('forwards a header the host allows, never a credential', async () => {
    const app = express().get(
      '/v1/models',
      passthrough({ target: `${mock.url}/v1`, forwardHeaders: ['OpenAI-Organization'] }),
    );
    await request(app).get('/v1/models').set('OpenAI-Organization', 'org-allowed');
    expect(mock.requests.at(-1)!.headers['openai-organization']).toBe('org-allowed');
    expect(() => passthrough({ target: `${mock.url}/v1`, forwardHeaders: ['x-api-key'] })).toThrow(TypeError);
  });
});
