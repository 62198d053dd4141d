import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { RequestHandler } from 'express';
import request from 'supertest';
import {
  bodyLimit,
  ensureContext,
  hashApiKey,
  keyAuth,
  MemoryKeyStore,
  Pricing,
  streamRelay,
  type KeyAuthOptions,
  type KeyStore,
  type RequestContext,
  type StreamRelay,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat as chatBody, listen, postAndLeave } from './support/http.js';

/** $1 per completion token and free prompts: a request's cost is exactly its completion tokens. */
const pricing = new Pricing({ priced: { inputPerMTokUsd: 0, outputPerMTokUsd: 1_000_000 } });
const T0 = Date.parse('2026-11-22T10:00:00Z');

/** A chat completion of the priced model, capped at 3 completion tokens ($3) unless `extra` says otherwise. */
const chat = (extra: Record<string, unknown> = {}) => chatBody({ model: 'priced', max_tokens: 3, ...extra });

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
  // A mock per test: a behaviour one test set or left queued never answers the next one.
  let mock: MockUpstream;
  let relays: StreamRelay[];
  beforeEach(async () => {
    mock = await createMockUpstream();
    relays = [];
  });
  afterEach(async () => {
    await mock.close();
    await Promise.all(relays.map((relay) => relay.close()));
  });

  /**
   * The relay behind keyAuth on `store`, and `billed()`: resolves once every request so far has
   * settled (its cost priced) and every settlement it caused has landed in the store, so a spend
   * read after it is final. An event for each, where a poll of the spend would only guess.
   */
  function gateway(store: KeyStore, options: Partial<KeyAuthOptions> = {}) {
    const contexts: RequestContext[] = [];
    const settlements: Promise<unknown>[] = [];
    const settle = store.settle.bind(store);
    store.settle = (reservationId, settlement) => {
      const landing = settle(reservationId, settlement);
      settlements.push(landing);
      return landing;
    };
    const capture: RequestHandler = (req, res, next) => {
      contexts.push(ensureContext(req, res));
      next();
    };
    const relay = streamRelay({ upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } });
    relays.push(relay);
    const app = express();
    app.post('/v1/chat/completions', capture, bodyLimit(), keyAuth({ store, pricing, ...options }), relay);
    const billed = async (): Promise<void> => {
      await Promise.all(contexts.map((ctx) => ctx.whenSettled()));
      await Promise.allSettled(settlements);
    };
    /** The key's spend once every bill has landed. */
    const spendOf = async (keyId: string): Promise<number> => {
      await billed();
      return (await store.getKey(keyId))!.spendUsd;
    };
    return { app, relay, billed, spendOf };
  }

  it('holds a budget under 50 parallel requests: 10 admitted, spend equals the budget, the rest insufficient_quota', async () => {
    const { store, key, secret } = await storeWithKey({ budgetUsd: 30 });
    const { app, billed } = gateway(store);
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
    await billed();
    expect((await store.getKey(key.id))!.spendUsd).toBeCloseTo(30, 9);
    expect((await store.getKey(key.id))!.spendByModel).toEqual({ priced: 30 });
  });

  it('bills a JSON request once with the usage the upstream reported', async () => {
    const { store, key, secret } = await storeWithKey();
    const { app, spendOf } = gateway(store);
    mock.enqueue({ chunks: 2 });
    await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', secret)
      .send(chat({ max_tokens: 50 }));
    expect(await spendOf(key.id)).toBe(2);
  });

  it('bills a JSON answer that came without usage at its reservation, never at zero', async () => {
    const { store, key, secret } = await storeWithKey();
    const { app, spendOf } = gateway(store);
    mock.enqueue({ chunks: 2, omitUsage: true });
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', secret)
      .send(chat({ max_tokens: 5 }));
    expect(res.status).toBe(200);
    // What it cost is unknown: the 5 output tokens it could have used, at $1 each.
    expect(await spendOf(key.id)).toBe(5);
  });

  it('bills a stream the client abandoned for what it received, once', async () => {
    const { store, key, secret } = await storeWithKey();
    const { app, spendOf } = gateway(store);
    mock.enqueue({ chunks: 40, chunkDelayMs: 15 });
    const server = await listen(app);
    try {
      const settled = mock.waitForSettled(1);
      await postAndLeave(server.port, chat({ stream: true, max_tokens: 100 }), {
        headers: { authorization: `Bearer ${secret}` },
        leaveWhen: (received) => received.split('data: ').length - 1 >= 3,
      });
      await settled;
      const spend = await spendOf(key.id);
      // Never silently zero, and never more than the chunks that could have been relayed.
      expect(spend).toBeGreaterThanOrEqual(3);
      expect(spend).toBeLessThan(40);
    } finally {
      await server.close();
    }
  });

  it('does not bill a request the upstream failed', async () => {
    const { store, key, secret } = await storeWithKey({ budgetUsd: 10 });
    const { app, spendOf } = gateway(store);
    mock.enqueue({ status: 500 });
    const res = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(res.status).toBe(502);
    // The reservation was released: the whole budget is still there for 3 requests of $3.
    for (let i = 0; i < 3; i++) {
      expect(
        (await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat())).status,
      ).toBe(200);
    }
    // Three bills of $3 and none for the failure.
    expect(await spendOf(key.id)).toBe(9);
  });

  it('keeps spend within the budget when requests carry no max_tokens and capRequests sends the reserve upstream', async () => {
    const { store, key, secret } = await storeWithKey({ budgetUsd: 20 });
    const { app, spendOf } = gateway(store, { defaultMaxTokens: 10, capRequests: true });
    // Without max_tokens the upstream generates what it likes: 30 tokens each.
    mock.setBehaviour({ chunks: 30, delayBeforeHeadersMs: 100 });
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        request(app)
          .post('/v1/chat/completions')
          .set('Authorization', `Bearer ${secret}`)
          .send(chat({ max_tokens: undefined })),
      ),
    );
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    expect(await spendOf(key.id)).toBeLessThanOrEqual(20);
  });

  it('closes the reservation (parallel slot) even when the upstream reports absurd usage', async () => {
    const { store, secret } = await storeWithKey({ maxParallel: 1 });
    const errors: unknown[] = [];
    const { app, billed } = gateway(store, {
      pricing: new Pricing({ priced: { inputPerMTokUsd: 10, outputPerMTokUsd: 10 } }),
      logger: { error: (_m, fields) => errors.push(fields) },
    });
    mock.enqueue({
      body: {
        id: 'x',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'x' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1e308, completion_tokens: 1e308, total_tokens: 1e308 },
      },
    });
    const send = () =>
      request(app)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${secret}`)
        .send(chat({ max_tokens: 5 }));
    const first = await send();
    expect(first.status).toBe(200);
    await billed(); // the first request's settlement has run, whatever it made of the usage
    const second = await send();
    // A failed settlement would leave the reservation open: the key's one parallel slot gone for good.
    expect(second.body.error?.code).toBeUndefined();
    expect(second.status).toBe(200);
    expect(errors).toEqual([]);
  });

  it('refuses a model outside the allow-list with 403 model_not_allowed', async () => {
    const { store, secret } = await storeWithKey({ models: ['gpt-4o*'] });
    const { app } = gateway(store);
    const res = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('model_not_allowed');
    expect(res.body.error.param).toBe('model');
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
    const { app } = gateway(store);
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-team-key-0001')
      .send(chat());
    expect(res.body.error.code).toBe('model_not_allowed');
  });

  it('answers a spent rpm with 429, Retry-After and RateLimit headers', async () => {
    const { store, secret } = await storeWithKey({ rpm: 2 });
    const { app } = gateway(store, { clock: () => T0 });
    const send = () => request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    const first = await send();
    expect(first.headers['ratelimit-limit']).toBe('2');
    await send();
    const third = await send();
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('rate_limited');
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    expect(third.headers['ratelimit-remaining']).toBe('0');
  });

  it('treats revoked and expired keys like unknown ones', async () => {
    const { store, key, secret } = await storeWithKey();
    const expired = await store.createKey({
      name: 'old',
      hash: hashApiKey('sk-expired-key-0001'),
      prefix: 'sk-expired',
      expiresAt: T0 - 1,
    });
    const { app } = gateway(store, { clock: () => T0 });
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
    const { app } = gateway(store, { clock: () => now });
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
  });

  it('refuses past maxParallel and frees the slot when a request ends', async () => {
    const { store, secret } = await storeWithKey({ maxParallel: 1 });
    const { app, billed } = gateway(store);
    mock.enqueue({ delayBeforeHeadersMs: 150 });
    const slow = request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    const slowDone = slow.then((r) => r);
    await new Promise((resolve) => mock.on('request', resolve));
    const second = await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat());
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('too_many_parallel_requests');
    expect((await slowDone).status).toBe(200);
    await billed(); // the slow request's reservation is settled: its slot is free
    expect(
      (await request(app).post('/v1/chat/completions').set('x-api-key', secret).send(chat())).status,
    ).toBe(200);
  });

  it('counts a model without a price and bills it 0', async () => {
    const { store, key, secret } = await storeWithKey();
    const own = new Pricing();
    const { app } = gateway(store, { pricing: own });
    await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', secret)
      .send(chat({ model: 'mystery-model' }));
    expect(own.unknownModelLookups).toBeGreaterThan(0);
    expect((await store.getKey(key.id))!.spendUsd).toBe(0);
  });
});
