// Review of issue 5 (observability): each test shows a defect in how requests are recorded.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import {
  bodyLimit,
  createMetrics,
  llmux,
  RequestTracker,
  retry,
  streamRelay,
  upstreamPool,
  type LlmuxMetrics,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const CHAT = '/v1/chat/completions';
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

async function counter(metrics: LlmuxMetrics, name: string) {
  const metric = metrics.registry.getSingleMetric(`llmux_${name}`)!;
  return (await metric.get()).values;
}

describe('observability review', () => {
  let a: MockUpstream;
  let b: MockUpstream;
  beforeAll(async () => {
    a = await createMockUpstream();
    b = await createMockUpstream();
  });
  afterAll(async () => {
    await a.close();
    await b.close();
  });
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    a.reset();
    b.reset();
  });

  function app(relay: ReturnType<typeof streamRelay>, tracker: RequestTracker, metrics: LlmuxMetrics) {
    const server = express();
    server.use(metrics.middleware());
    server.use(tracker.middleware());
    server.post(CHAT, bodyLimit(), relay);
    return server;
  }

  it('records a request that succeeded on a retry as a success, not as an error', async () => {
    const tracker = new RequestTracker();
    const metrics = createMetrics();
    const relay = streamRelay({
      upstream: upstreamPool({ upstreams: [{ url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' }] }),
      retry: retry({ attempts: 2, baseDelayMs: 0, maxDelayMs: 0 }),
    });
    cleanups.push(() => relay.close());
    a.enqueue({ status: 503 });
    const res = await request(app(relay, tracker, metrics))
      .post(CHAT)
      .send(chat());
    expect(res.status).toBe(200);
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    expect(tracker.recent(1)[0]!.errorCode).toBeUndefined();
    expect(tracker.stats().errors).toBe(0);
    const requests = await counter(metrics, 'requests_total');
    expect(requests.map((v) => v.labels.code)).toEqual(['none']);
  });

  it('records a hedged request whose loser failed as a success when the winner answered', async () => {
    const tracker = new RequestTracker();
    const metrics = createMetrics();
    const relay = streamRelay({
      upstream: upstreamPool({
        upstreams: [
          { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
          { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
        ],
      }),
      hedge: { afterMs: 50 },
    });
    cleanups.push(() => relay.close());
    a.enqueue({ delayBeforeHeadersMs: 150, resetBeforeHeaders: true });
    b.enqueue({ delayBeforeHeadersMs: 400 });
    const res = await request(app(relay, tracker, metrics))
      .post(CHAT)
      .send(chat());
    expect(res.status).toBe(200);
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    expect(tracker.recent(1)[0]!.errorCode).toBeUndefined();
  });

  it('records a client that left mid-stream in the tracker as client_closed, not as a success', async () => {
    const tracker = new RequestTracker();
    const metrics = createMetrics();
    const relay = streamRelay({
      upstream: upstreamPool({ upstreams: [{ url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' }] }),
    });
    a.setBehaviour({ chunks: 100, chunkDelayMs: 20 });
    const server = http.createServer(app(relay, tracker, metrics));
    cleanups.push(() => relay.close());
    cleanups.push(() => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => {
      const req = http.request(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: CHAT,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', () => undefined);
      req.end(JSON.stringify(chat({ stream: true })));
    });
    await Promise.all([tracker.whenRecorded(), metrics.whenRecorded()]);
    // The metrics see code client_closed once the request settled; the tracker must too.
    expect((await counter(metrics, 'requests_total')).map((v) => v.labels.code)).toEqual(['client_closed']);
    expect(tracker.recent(1)[0]!.errorCode).toBe('client_closed');
    expect(tracker.stats().errors).toBe(1);
  });

  it('llmux() with a tracker records only its own routes, not host routes mounted after it', async () => {
    const tracker = new RequestTracker();
    const gateway = llmux({ upstream: `${a.url}/v1`, auth: false, tracker });
    cleanups.push(() => gateway.close());
    const host = express();
    host.use(gateway);
    host.get('/health', (_req, res) => {
      res.json({ ok: true });
    });
    expect((await request(host).get('/health')).status).toBe(200);
    await tracker.whenRecorded();
    expect(tracker.recent().map((r) => r.route)).toEqual([]);
  });

  it('refuses a huge model name, so no record carries it', async () => {
    const tracker = new RequestTracker({ capacity: 10 });
    const gateway = llmux({
      upstream: `${a.url}/v1`,
      auth: { keys: [{ id: 'k1', key: 'sk-llmux-review-0123456789abcdef' }] },
      tracker,
    });
    cleanups.push(() => gateway.close());
    const host = express().use(gateway);
    const res = await request(host)
      .post(CHAT)
      .send(chat({ model: 'm'.repeat(512 * 1024) }));
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe('model');
    await tracker.whenRecorded();
    // A ring of `capacity` records is fixed memory only if every field is bounded (route and id are).
    expect(tracker.recent(1)[0]!.model ?? '').not.toHaveLength(512 * 1024);
  });

  it('logs a failing tracker sink without the credential its error quotes', () => {
    const logged: string[] = [];
    const tracker = new RequestTracker({
      sink: {
        write() {
          throw new Error('export failed: Authorization: Bearer sk-exporter-secret-0123456789');
        },
      },
      logger: { error: (message, fields) => logged.push(`${message} ${JSON.stringify(fields)}`) },
    });
    tracker.record({
      id: 'r1',
      timeMs: 0,
      route: CHAT,
      model: 'gpt-4o-mini',
      keyId: undefined,
      teamId: undefined,
      userId: undefined,
      status: 200,
      errorCode: undefined,
      stream: false,
      latencyMs: 10,
      ttfbMs: undefined,
      promptTokens: 0,
      completionTokens: 0,
      costUsd: 0,
      upstream: undefined,
      attempts: 1,
    });
    expect(logged).toHaveLength(1);
    expect(logged[0]).not.toContain('sk-exporter-secret');
  });
});
