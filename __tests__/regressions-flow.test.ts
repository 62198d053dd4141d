// Review: failing tests that demonstrate defects in the key accounting and flow-control pieces.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import {
  bodyLimit,
  getContext,
  hashApiKey,
  keyAuth,
  MemoryKeyStore,
  Pricing,
  retry,
  streamRelay,
  upstreamPool,
  type RequestContext,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

/** $1 per completion token, free prompts: a request's cost is its completion tokens. */
const pricing = new Pricing({ priced: { inputPerMTokUsd: 0, outputPerMTokUsd: 1_000_000 } });
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'priced',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});
const SECRET = 'sk-llmux-review-secret-0001';
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('review: flow control and accounting', () => {
  let a: MockUpstream;
  let b: MockUpstream;
  beforeAll(async () => {
    [a, b] = await Promise.all([createMockUpstream(), createMockUpstream()]);
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
  });
  afterEach(() => {
    a.reset();
    b.reset();
  });

  const single = () => upstreamPool({ upstreams: [{ url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' }] });

  it('retries an upstream 503 when retryOn is [503]', async () => {
    const relay = streamRelay({
      upstream: single(),
      retry: retry({ attempts: 3, retryOn: [503], baseDelayMs: 0, maxDelayMs: 0 }),
    });
    const app = express().post('/v1/chat/completions', bodyLimit(), relay);
    a.enqueue({ status: 503 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(a.requests).toHaveLength(2);
    expect(res.status).toBe(200);
    await relay.close();
  });

  it('does not retry an upstream 501, which is not in the default retryOn', async () => {
    const relay = streamRelay({ upstream: single(), retry: retry({ baseDelayMs: 0, maxDelayMs: 0 }) });
    const app = express().post('/v1/chat/completions', bodyLimit(), relay);
    a.setBehaviour({ status: 501 });
    await request(app).post('/v1/chat/completions').send(chat());
    expect(a.requests).toHaveLength(1);
    await relay.close();
  });

  it('bounds the retried attempt by deadlineMs, not only the wait before it', async () => {
    const relay = streamRelay({
      upstream: single(),
      retry: retry({ deadlineMs: 300, baseDelayMs: 0, maxDelayMs: 0 }),
    });
    const app = express().post('/v1/chat/completions', bodyLimit(), relay);
    a.enqueue({ status: 500 }, { delayBeforeHeadersMs: 3_000 });
    const started = Date.now();
    await request(app).post('/v1/chat/completions').send(chat());
    expect(Date.now() - started).toBeLessThan(1_500);
    await relay.close();
  });

  it('counts a hedged loser that really failed (network reset) against its upstream', async () => {
    const pool = upstreamPool({
      upstreams: [
        { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
        { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
      ],
    });
    const contexts: RequestContext[] = [];
    const relay = streamRelay({ upstream: pool, hedge: { afterMs: 50 } });
    const app = express();
    app.use((_req, res, next) => {
      res.on('close', () => contexts.push(getContext(res)!));
      next();
    });
    app.post('/v1/chat/completions', bodyLimit(), relay);
    // a (picked first) resets at 150 ms; the hedge on b answers at 400 ms and wins.
    a.enqueue({ delayBeforeHeadersMs: 150, resetBeforeHeaders: true });
    b.enqueue({ delayBeforeHeadersMs: 400 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    expect(contexts[0]!.attemptLog.find((r) => r.upstream === 'a')!.outcome).toBe('network');
    expect(pool.status().find((s) => s.name === 'a')!.consecutiveFailures).toBe(1);
    await relay.close();
  });

  it('releases the pool slot when the relay is closed while a request waits to retry', async () => {
    const pool = single();
    const relay = streamRelay({
      upstream: pool,
      retry: retry({ baseDelayMs: 300, maxDelayMs: 300, random: () => 0.99 }),
    });
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), relay);
    app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).end();
    });
    a.enqueue({ status: 500 });
    const pending = request(app).post('/v1/chat/completions').send(chat());
    const done = pending.then((r) => r);
    while (a.requests.length === 0) await tick(10);
    await tick(50);
    await relay.close(); // during the retry wait
    await done;
    expect(pool.inFlightTotal()).toBe(0);
  });

  it('keeps spend within the budget when requests carry no max_tokens and capRequests sends the reserve upstream', async () => {
    const store = new MemoryKeyStore();
    const key = await store.createKey({
      name: 'k',
      hash: hashApiKey(SECRET),
      prefix: 'sk-llmux-rev',
      budgetUsd: 20,
    });
    const relay = streamRelay({ upstream: { url: `${a.url}/v1`, apiKeys: ['sk-up'] } });
    const app = express().post(
      '/v1/chat/completions',
      bodyLimit(),
      keyAuth({ store, pricing, defaultMaxTokens: 10, capRequests: true }),
      relay,
    );
    // Without max_tokens the upstream generates what it likes: 30 tokens each.
    a.setBehaviour({ chunks: 30, delayBeforeHeadersMs: 100 });
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${SECRET}`).send(chat()),
      ),
    );
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    await tick(100);
    expect((await store.getKey(key.id))!.spendUsd).toBeLessThanOrEqual(20);
    await relay.close();
  });

  it('closes the reservation (parallel slot) even when the upstream reports absurd usage', async () => {
    const store = new MemoryKeyStore();
    await store.createKey({ name: 'k', hash: hashApiKey(SECRET), prefix: 'sk-llmux-rev', maxParallel: 1 });
    const relay = streamRelay({ upstream: { url: `${a.url}/v1`, apiKeys: ['sk-up'] } });
    const errors: unknown[] = [];
    const app = express().post(
      '/v1/chat/completions',
      bodyLimit(),
      keyAuth({
        store,
        pricing: new Pricing({ priced: { inputPerMTokUsd: 10, outputPerMTokUsd: 10 } }),
        logger: { error: (_m, fields) => errors.push(fields) },
      }),
      relay,
    );
    a.enqueue({
      body: {
        id: 'x',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'x' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1e308, completion_tokens: 1e308, total_tokens: 1e308 },
      },
    });
    const first = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${SECRET}`)
      .send(chat({ max_tokens: 5 }));
    expect(first.status).toBe(200);
    await tick(50);
    const second = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${SECRET}`)
      .send(chat({ max_tokens: 5 }));
    // The failed settlement left the reservation open: the key's one parallel slot is gone for good.
    expect(second.body.error?.code).toBeUndefined();
    expect(second.status).toBe(200);
    expect(errors).toEqual([]);
    await relay.close();
  });
});
