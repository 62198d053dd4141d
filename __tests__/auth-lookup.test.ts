// Authentication reads the key and the address's failed-auth state in one store step, on both
// stores; refusals that waiting cannot cure carry no Retry-After and tell SDKs not to retry.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import {
  bodyLimit,
  hashApiKey,
  keyAuth,
  MemoryKeyStore,
  Pricing,
  streamRelay,
  type KeyStore,
} from '../lib/index.js';
import { RedisKeyStore } from '../lib/redis.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { requireRedis } from './support/redis.js';

const redis = await requireRedis();
const T0 = Date.parse('2026-11-22T10:00:00Z');
const stores: KeyStore[] = [];
afterAll(async () => {
  for (const store of stores.splice(0)) await store.close();
});

const makers: [string, () => KeyStore][] = [
  ['MemoryKeyStore', () => new MemoryKeyStore({ clock: () => T0 })],
];
if (!redis.skipped) {
  makers.push([
    'RedisKeyStore',
    () =>
      new RedisKeyStore({
        url: redis.url,
        prefix: `llmux-test:lookup:${randomBytes(6).toString('hex')}:`,
        clock: () => T0,
      }),
  ]);
}

describe.each(makers)('lookupKey on %s', (_name, make) => {
  function open(): KeyStore {
    const store = make();
    stores.push(store);
    return store;
  }

  it('finds the key by its hash in any case, and nothing for a malformed hash', async () => {
    const store = open();
    const hash = hashApiKey('sk-lookup-a');
    const key = await store.createKey({ name: 'a', hash, prefix: 'sk-lookup' });
    expect((await store.lookupKey(hash.toUpperCase(), '10.0.0.1', T0)).key?.id).toBe(key.id);
    expect((await store.lookupKey('', '10.0.0.1', T0)).key).toBeUndefined();
    expect((await store.lookupKey('not-a-hash', '10.0.0.1', T0)).key).toBeUndefined();
  });

  it('reports a blocked address without counting or touching anything', async () => {
    const store = open();
    for (let i = 0; i < 5; i++) await store.recordAuthFailure('10.0.0.2', T0);
    const seen = await store.lookupKey('', '10.0.0.2', T0 + 1_000);
    expect(seen.failures).toEqual({ blocked: true, retryAfterMs: 15 * 60_000 - 1_000 });
    // Looking again, many times, changes nothing: the window still ends when it did.
    for (let i = 0; i < 3; i++) await store.lookupKey('', '10.0.0.2', T0 + 2_000);
    expect(await store.authFailureState('10.0.0.2', T0 + 15 * 60_000)).toEqual({
      blocked: false,
      retryAfterMs: 0,
    });
    expect((await store.lookupKey('', '10.0.0.3', T0)).failures).toEqual({ blocked: false, retryAfterMs: 0 });
  });

  it('refuses an address that is not a bounded string', async () => {
    const store = open();
    await expect(store.lookupKey('', 'x'.repeat(5_000), T0)).rejects.toMatchObject({ code: 'invalid_field' });
  });
});

describe('refusals that waiting cannot cure', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  const pricing = new Pricing({ priced: { inputPerMTokUsd: 1, outputPerMTokUsd: 1 } });
  async function app(limits: Record<string, unknown>) {
    const store = new MemoryKeyStore({ clock: () => T0 });
    stores.push(store);
    await store.createKey({ name: 'k', hash: hashApiKey('sk-refusals-key'), prefix: 'sk', ...limits });
    const relay = streamRelay({ upstream: `${mock.url}/v1` });
    const host = express().post(
      '/v1/chat/completions',
      bodyLimit(),
      keyAuth({ store, pricing, clock: () => T0 }),
      relay,
    );
    return { host, relay };
  }
  const body = (maxTokens: number) => ({
    model: 'priced',
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'hi' }],
  });

  it('a request above the whole tpm limit: 429 without Retry-After, and x-should-retry: false', async () => {
    const { host, relay } = await app({ tpm: 100 });
    const res = await request(host)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-refusals-key')
      .send(body(5_000));
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('rate_limited');
    expect(res.headers['retry-after']).toBeUndefined();
    expect(res.headers['x-should-retry']).toBe('false');
    // A request that fits still passes.
    expect(
      (await request(host).post('/v1/chat/completions').set('x-api-key', 'sk-refusals-key').send(body(3)))
        .status,
    ).toBe(200);
    await relay.close();
  });

  it('a request that only has to wait for the window: Retry-After, and SDKs may retry', async () => {
    const { host, relay } = await app({ rpm: 1 });
    const send = () =>
      request(host).post('/v1/chat/completions').set('x-api-key', 'sk-refusals-key').send(body(3));
    expect((await send()).status).toBe(200);
    const res = await send();
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.headers['x-should-retry']).toBeUndefined();
    await relay.close();
  });

  it('a daily quota: Retry-After to 00:00 UTC, and x-should-retry: false', async () => {
    const { host, relay } = await app({ dailyRequests: 1 });
    const send = () =>
      request(host).post('/v1/chat/completions').set('x-api-key', 'sk-refusals-key').send(body(3));
    expect((await send()).status).toBe(200);
    const res = await send();
    expect(res.body.error.code).toBe('daily_quota_exceeded');
    expect(Number(res.headers['retry-after'])).toBe(14 * 3600);
    expect(res.headers['x-should-retry']).toBe('false');
    await relay.close();
  });
});
