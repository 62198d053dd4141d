import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import {
  bodyLimit,
  hashApiKey,
  keyAuth,
  MemoryKeyStore,
  Pricing,
  streamRelay,
  type KeyAuthOptions,
  type KeyStore,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';

/** $1 per completion token and free prompts: a request's cost is exactly its completion tokens. */
const pricing = new Pricing({ priced: { inputPerMTokUsd: 0, outputPerMTokUsd: 1_000_000 } });
const T0 = Date.parse('2026-11-22T10:00:00Z');

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'priced',
  max_tokens: 3,
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

async function storeWithKey(limits: Record<string, unknown> = {}, secret = 'sk-llmux-test-secret-0001') {
  const store = new MemoryKeyStore({ clock: () => T0 });
  const key = await store.createKey({
    name: 'k',
    hash: hashApiKey(secret),
    prefix: 'sk-llmux-test',
    ...limits,
  });
  return { store, key, secret };
}

describe.each(expressVersions)('keyAuth accounting on %s', (_label, express) => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  function gateway(store: KeyStore, options: Partial<KeyAuthOptions> = {}) {
    const relay = streamRelay({ upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } });
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), keyAuth({ store, pricing, ...options }), relay);
    return { app, relay };
  }

  it('holds a budget under 50 parallel requests: 10 admitted, spend equals the budget, the rest insufficient_quota', async () => {
    const { store, key, secret } = await storeWithKey({ budgetUsd: 30 });
    const { app, relay } = gateway(store);
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${secret}`).send(chat()),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(10);
    expect(refused).toHaveLength(40);
    for (const r of refused) {
      expect(r.body.error.code).toBe('insufficient_quota');
      // A spent budget does not come back by waiting: no Retry-After to sleep on, and SDKs told so.
      expect(r.headers['retry-after']).toBeUndefined();
      expect(r.headers['x-should-retry']).toBe('false');
    }
    await waitForSpend(store, key.id, 30);
    expect((await store.getKey(key.id))!.spendUsd).toBeCloseTo(30, 9);
    expect((await store.getKey(key.id))!.spendByModel).toEqual({ priced: 30 });
    await relay.close();
  });

  it('bills a JSON request once with the usage the upstream reported', async () => {
    const { store, key, secret } = await storeWithKey();
    const { app, relay } = gateway(store);
    mock.enqueue({ chunks: 2 });
    await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', secret)
      .send(chat({ max_tokens: 50 }));
    await waitForSpend(store, key.id, 2);
    expect((await store.getKey(key.id))!.spendUsd).toBe(2);
    await relay.close();
  });

  it('bills a stream the client abandoned for what it received, once', async () => {
    const { store, key, secret } = await storeWithKey();
    const { app, relay } = gateway(store);
    mock.enqueue({ chunks: 40, chunkDelayMs: 15 });
    const server = http.createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const settled = mock.waitForSettled(mock.requests.length + 1);
    let received = 0;
    await new Promise<void>((resolve) => {
      const req = http.request(
        {
          port: (server.address() as AddressInfo).port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        },
        (res) => {
          res.on('data', (chunk: Buffer) => {
            received += chunk.toString().split('data: ').length - 1;
            if (received >= 3) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on('error', () => undefined);
      req.end(JSON.stringify(chat({ stream: true, max_tokens: 100 })));
    });
    await settled;
    const spend = await waitForSpend(store, key.id, 1);
    // Never silently zero, and never more than the chunks that could have been relayed.
    expect(spend).toBeGreaterThanOrEqual(3);
    expect(spend).toBeLessThan(40);
    await new Promise((resolve) => server.close(resolve));
    await relay.close();
  });

  it('does not bill a request the upstream failed', async () => {
    const { store, key, secret } = await storeWithKey({ budgetUsd: 10 });
    const { app, relay } = gateway(store);
    mock.enqueue({ status: 500 });
    const res = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(res.status).toBe(502);
    // The reservation was released: the whole budget is still there for 3 requests of $3.
    for (let i = 0; i < 3; i++) {
      expect(
        (await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat())).status,
      ).toBe(200);
    }
    await waitForSpend(store, key.id, 9);
    await relay.close();
  });

  it('refuses a model outside the allow-list with 403 model_not_allowed', async () => {
    const { store, secret } = await storeWithKey({ models: ['gpt-4o*'] });
    const { app, relay } = gateway(store);
    const res = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('model_not_allowed');
    expect(res.body.error.param).toBe('model');
    await relay.close();
  });

  it('applies the team allow-list to the team’s keys', async () => {
    const store = new MemoryKeyStore({ clock: () => T0 });
    const team = await store.createTeam({ name: 'research', models: ['gpt-4o-mini'] });
    await store.createKey({
      name: 'k',
      hash: hashApiKey('sk-team-key-0001'),
      prefix: 'sk-team',
      teamId: team.id,
    });
    const { app, relay } = gateway(store);
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-team-key-0001')
      .send(chat());
    expect(res.body.error.code).toBe('model_not_allowed');
    await relay.close();
  });

  it('answers a spent rpm with 429, Retry-After and RateLimit headers', async () => {
    const { store, secret } = await storeWithKey({ rpm: 2 });
    const { app, relay } = gateway(store, { clock: () => T0 });
    const send = () => request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    const first = await send();
    expect(first.headers['ratelimit-limit']).toBe('2');
    await send();
    const third = await send();
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('rate_limited');
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    expect(third.headers['ratelimit-remaining']).toBe('0');
    await relay.close();
  });

  it('treats revoked and expired keys like unknown ones', async () => {
    const { store, key, secret } = await storeWithKey();
    const expired = await store.createKey({
      name: 'old',
      hash: hashApiKey('sk-expired-key-0001'),
      prefix: 'sk-expired',
      expiresAt: T0 - 1,
    });
    const { app, relay } = gateway(store, { clock: () => T0 });
    const unknown = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-nope-0000000')
      .send(chat());
    await store.revokeKey(key.id);
    const revoked = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    const old = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-expired-key-0001')
      .send(chat());
    expect(expired.id).toBeDefined();
    for (const res of [revoked, old]) {
      expect(res.status).toBe(401);
      expect(res.body).toEqual(unknown.body);
    }
    await relay.close();
  });

  it('blocks failures from an address after 5 of them until its window passes, never a valid key', async () => {
    const { store, secret } = await storeWithKey();
    let recorded = 0;
    const record = store.recordAuthFailure.bind(store);
    store.recordAuthFailure = (address, nowMs) => {
      recorded++;
      return record(address, nowMs);
    };
    let now = T0;
    const { app, relay } = gateway(store, { clock: () => now });
    const send = (key: string) =>
      request(app).post('/v1/chat/completions').set('x-api-key', key).send(chat());
    // The 5th failure itself is still a 401: the limiter changes what comes after it.
    for (let i = 0; i < 5; i++) expect((await send(`sk-wrong-${i}`)).status).toBe(401);
    const sixth = await send('sk-wrong-6');
    expect(sixth.status).toBe(429);
    expect(sixth.body.error.code).toBe('too_many_auth_failures');
    // Waiting cannot help soon: OpenAI SDKs must not sleep on its Retry-After.
    expect(sixth.headers['x-should-retry']).toBe('false');
    // A blocked failure costs no store work beyond the lookup: nothing more is recorded.
    expect(recorded).toBe(5);
    // Behind one NAT address, another client's valid key is still served.
    expect((await send(secret)).status).toBe(200);
    now = T0 + 15 * 60_000 + 1;
    expect((await send('sk-wrong-again')).status).toBe(401);
    expect((await send(secret)).status).toBe(200);
    await relay.close();
  });

  it('refuses past maxParallel and frees the slot when a request ends', async () => {
    const { store, secret } = await storeWithKey({ maxParallel: 1 });
    const { app, relay } = gateway(store);
    mock.enqueue({ delayBeforeHeadersMs: 150 });
    const slow = request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    const slowDone = slow.then((r) => r);
    await new Promise((resolve) => mock.on('request', resolve));
    const second = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('too_many_parallel_requests');
    expect((await slowDone).status).toBe(200);
    await waitForSpend(store, (await store.listKeys())[0]!.id, 3);
    expect(
      (await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat())).status,
    ).toBe(200);
    await relay.close();
  });

  it('counts a model without a price and bills it 0', async () => {
    const { store, key, secret } = await storeWithKey();
    const own = new Pricing();
    const { app, relay } = gateway(store, { pricing: own });
    await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', secret)
      .send(chat({ model: 'mystery-model' }));
    expect(own.unknownModelLookups).toBeGreaterThan(0);
    expect((await store.getKey(key.id))!.spendUsd).toBe(0);
    await relay.close();
  });
});

/** Settlement runs on the response's 'close'; wait until it has landed (bounded). */
async function waitForSpend(store: KeyStore, keyId: string, atLeast: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const spend = (await store.getKey(keyId))!.spendUsd;
    if (spend >= atLeast - 1e-9) return spend;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`spend never reached ${atLeast}`);
}
