// streamRelay's flow control against two real mock upstreams: retries (counted, bounded by the
// deadline, on the other upstream), hedging (the loser aborted and never billed) and cooling.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import {
  bodyLimit,
  ensureContext,
  getContext,
  hashApiKey,
  keyAuth,
  MemoryKeyStore,
  Pricing,
  retry,
  streamRelay,
  upstreamPool,
  type RequestContext,
  type StreamRelay,
  type StreamRelayOptions,
  type UpstreamPool,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

import { chat, waitFor } from './support/http.js';

describe('streamRelay with retry, a pool and hedging', () => {
  let a: MockUpstream;
  let b: MockUpstream;
  let contexts: RequestContext[];
  let relays: StreamRelay[];

  // Fresh mocks per test: a retry, a hedge or a stream one test leaves running cannot take the next
  // test's scripted behaviour. The mocks close first, cutting what is still running, then the relays.
  beforeEach(async () => {
    [a, b] = await Promise.all([createMockUpstream(), createMockUpstream()]);
    relays = [];
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    await Promise.all(relays.map((relay) => relay.close()));
  });

  /** A relay the test's cleanup closes. */
  function relayOf(options: StreamRelayOptions): StreamRelay {
    const relay = streamRelay(options);
    relays.push(relay);
    return relay;
  }

  function makeApp(options: Partial<StreamRelayOptions> & { pool?: UpstreamPool } = {}) {
    contexts = [];
    const pool =
      options.pool ??
      upstreamPool({
        upstreams: [
          { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
          { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
        ],
      });
    const relay = relayOf({ upstream: pool, ...options });
    const app = express();
    app.use((_req, res, next) => {
      res.on('close', () => contexts.push(getContext(res)!));
      next();
    });
    app.post('/v1/chat/completions', bodyLimit(), relay);
    return { app, relay, pool };
  }

  const single = (mock: MockUpstream) =>
    upstreamPool({ upstreams: [{ url: `${mock.url}/v1`, apiKey: 'sk-only', name: 'only' }] });

  it('makes exactly the configured number of attempts (attempts: 3 means 3 tries in all)', async () => {
    const { app } = makeApp({
      pool: single(a),
      retry: retry({ attempts: 3, baseDelayMs: 1, maxDelayMs: 2 }),
    });
    a.setBehaviour({ status: 503 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(502);
    expect(a.requests).toHaveLength(3);
    expect(contexts[0]!.attempts).toBe(3);
  });

  it('succeeds on a retry and answers the client once', async () => {
    const { app } = makeApp({ pool: single(a), retry: retry({ baseDelayMs: 1, maxDelayMs: 2 }) });
    a.enqueue({ status: 500 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    expect(a.requests).toHaveLength(2);
  });

  it('gives up at once with the upstream 429 when Retry-After is above the cap', async () => {
    const { app } = makeApp({ pool: single(a), retry: retry({ maxRetryAfterMs: 10_000 }) });
    a.enqueue({ status: 429, retryAfter: '60' });
    const started = Date.now();
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('rate_limited');
    expect(res.headers['retry-after']).toBe('60');
    expect(a.requests).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('never retries once a byte of the stream reached the client', async () => {
    const { app } = makeApp({ pool: single(a), retry: retry({ baseDelayMs: 1, maxDelayMs: 2 }) });
    a.enqueue({ chunks: 5, resetAfterChunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(200);
    expect(res.text).toContain('event: error');
    expect(a.requests).toHaveLength(1);
  });

  it('retries on the other upstream than the one that just failed', async () => {
    const { app, pool } = makeApp({ retry: retry({ attempts: 2, baseDelayMs: 1, maxDelayMs: 2 }) });
    a.setBehaviour({ status: 500 });
    b.setBehaviour({ status: 500 });
    for (let i = 0; i < 6; i++) {
      a.reset();
      b.reset();
      a.setBehaviour({ status: 500 });
      b.setBehaviour({ status: 500 });
      await request(app).post('/v1/chat/completions').send(chat());
      // Two tries in all, one on each upstream.
      expect(a.requests.length + b.requests.length).toBe(2);
      expect(a.requests).toHaveLength(1);
      expect(b.requests).toHaveLength(1);
      pool.enable('a');
      pool.enable('b');
    }
  });

  it('retries on network resets before headers', async () => {
    const { app } = makeApp({ pool: single(a), retry: retry({ baseDelayMs: 1, maxDelayMs: 2 }) });
    a.enqueue({ resetBeforeHeaders: true });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
  });

  it('hedges a slow upstream: the second answers, the first is aborted and not relayed', async () => {
    const { app, pool } = makeApp({ hedge: { afterMs: 50 } });
    a.setBehaviour({ delayBeforeHeadersMs: 2_000 });
    b.setBehaviour({});
    // Round-robin starts on a: the hedge goes to b.
    const settledA = a.waitForSettled(1);
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    const [recordA] = await settledA;
    expect(recordA!.aborted).toBe(true);
    expect(b.requests).toHaveLength(1);
    expect(contexts[0]!.upstream).toBe('b');
    expect(contexts[0]!.attempts).toBe(2);
    expect(pool.inFlightTotal()).toBe(0);
    // The aborted loser did not count against a's health.
    expect(pool.status().find((s) => s.name === 'a')!.consecutiveFailures).toBe(0);
  });

  it('bills a hedged request once, for the winner only', async () => {
    const store = new MemoryKeyStore();
    const key = await store.createKey({
      name: 'h',
      hash: hashApiKey('sk-hedge-key-0001'),
      prefix: 'sk-hedge',
    });
    const pool = upstreamPool({
      upstreams: [
        { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
        { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
      ],
    });
    const pricing = new Pricing({ priced: { inputPerMTokUsd: 0, outputPerMTokUsd: 1_000_000 } });
    const auth = keyAuth({ store, pricing });
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), auth, relayOf({ upstream: pool, hedge: { afterMs: 50 } }));
    // The slow one would answer with 9 tokens, the fast one with 2.
    a.setBehaviour({ delayBeforeHeadersMs: 300, chunks: 9 });
    b.setBehaviour({ chunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-hedge-key-0001')
      .send(chat({ model: 'priced', max_tokens: 20 }));
    expect(res.status).toBe(200);
    await a.waitForSettled(1);
    await auth.whenSettled();
    await auth.close();
    expect((await store.getKey(key.id))!.spendUsd).toBe(2);
  });

  it('does not hedge an upstream that answers in time', async () => {
    const { app, pool } = makeApp({ hedge: { afterMs: 500 } });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    expect(a.requests.length + b.requests.length).toBe(1);
    expect(pool.inFlightTotal()).toBe(0);
  });

  it('answers 503 no_upstream_available with Retry-After when every upstream cools', async () => {
    const { app, pool } = makeApp();
    a.setBehaviour({ status: 429, retryAfter: '30' });
    b.setBehaviour({ status: 429, retryAfter: '20' });
    await request(app).post('/v1/chat/completions').send(chat());
    await request(app).post('/v1/chat/completions').send(chat());
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('no_upstream_available');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(20);
    expect(pool.inFlightTotal()).toBe(0);
  });

  it('retries an upstream 503 when retryOn is [503]', async () => {
    const { app } = makeApp({
      pool: single(a),
      retry: retry({ attempts: 3, retryOn: [503], baseDelayMs: 0, maxDelayMs: 0 }),
    });
    a.enqueue({ status: 503 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(a.requests).toHaveLength(2);
    expect(res.status).toBe(200);
  });

  it('does not retry an upstream 501, which is not in the default retryOn', async () => {
    const { app } = makeApp({ pool: single(a), retry: retry({ baseDelayMs: 0, maxDelayMs: 0 }) });
    a.setBehaviour({ status: 501 });
    await request(app).post('/v1/chat/completions').send(chat());
    expect(a.requests).toHaveLength(1);
  });

  it('bounds the retried attempt by deadlineMs, not only the wait before it', async () => {
    const { app } = makeApp({
      pool: single(a),
      retry: retry({ deadlineMs: 300, baseDelayMs: 0, maxDelayMs: 0 }),
    });
    // The retry's upstream would answer after 10 s; only the deadline can cut it before that.
    a.enqueue({ status: 500 }, { delayBeforeHeadersMs: 10_000 });
    await request(app).post('/v1/chat/completions').send(chat());
    const [, retried] = await a.waitForSettled(2, 10_000);
    expect(retried!.aborted).toBe(true);
    expect(retried!.completed).toBe(false);
  });

  it('counts a hedged loser that really failed (network reset) against its upstream', async () => {
    const { app, pool } = makeApp({ hedge: { afterMs: 50 } });
    // a (picked first) resets at 150 ms; the hedge on b answers at 400 ms and wins.
    a.enqueue({ delayBeforeHeadersMs: 150, resetBeforeHeaders: true });
    b.enqueue({ delayBeforeHeadersMs: 400 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
    expect(contexts[0]!.attemptLog.find((r) => r.upstream === 'a')!.outcome).toBe('network');
    expect(pool.status().find((s) => s.name === 'a')!.consecutiveFailures).toBe(1);
  });

  it('releases the pool slot when the relay is closed while a request waits to retry', async () => {
    const pool = single(a);
    const relay = relayOf({
      upstream: pool,
      retry: retry({ baseDelayMs: 300, maxDelayMs: 300, random: () => 0.99 }),
    });
    const waiting: RequestContext[] = [];
    const app = express();
    app.post(
      '/v1/chat/completions',
      (req, res, next) => {
        waiting.push(ensureContext(req, res));
        next();
      },
      bodyLimit(),
      relay,
    );
    app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).end();
    });
    a.enqueue({ status: 500 });
    const done = request(app)
      .post('/v1/chat/completions')
      .send(chat())
      .then((r) => r);
    // The relay notes why it retries just before it starts the wait.
    await waitFor(() => waiting[0]?.retryReasons.length === 1, { what: 'the relay to wait to retry' });
    await relay.close(); // during the retry wait
    await done;
    expect(pool.inFlightTotal()).toBe(0);
  });
});
