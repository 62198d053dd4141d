// createMetrics and metricsHandler against real Express apps (5 and 4), the real relay and a real
// mock upstream: the scrape parses as Prometheus text, holds the expected series, and no label
// carries a key or an id.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import request from 'supertest';
import {
  bodyLimit,
  concurrencyGate,
  keyAuth,
  recovery,
  retry,
  streamRelay,
  upstreamPool,
} from '../lib/index.js';
import {
  createMetrics,
  metricsHandler,
  type LlmuxMetrics,
  type MetricsOptions,
} from '../lib/metrics/metrics.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat, listen, postAndLeave } from './support/http.js';

type ExpressFactory = (typeof expressVersions)[number][1];

const KEY_ID = 'team-alpha-key';
const CLIENT_KEY = 'sk-llmux-client-0123456789abcdef';
const UPSTREAM_KEY = 'sk-upstream-secret-fedcba9876543210';
const REQUEST_ID = 'req-metrics-leak-check-42';
const CHAT = '/v1/chat/completions';
const silent = { error: () => undefined };

// --- A small parser of the Prometheus text format (version 0.0.4) ---

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const VALUE = '(?:[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][-+]?\\d+)?|NaN|[-+]Inf)';
const HELP_LINE = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_LINE = new RegExp(
  `^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? (${VALUE})(?: -?\\d+)?$`,
);
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;

interface Scrape {
  samples: Sample[];
  types: Map<string, string>;
}

/** Parses a scrape; throws on any line that is not empty, `# HELP`, `# TYPE` or a sample. */
function parsePrometheus(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    // The format ignores empty lines; prom-client puts one after each metric's block.
    if (line === '' || HELP_LINE.test(line)) continue;
    const type = TYPE_LINE.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    if (!sample) throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (sample[2] ?? '').matchAll(LABEL_PAIR)) {
      labels[name!] = value!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    }
    const raw = sample[3]!;
    samples.push({
      name: sample[1]!,
      labels,
      value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw),
    });
  }
  return { samples, types };
}

function matching(scrape: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return scrape.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** The value of the one sample with exactly these labels (le excluded), or undefined. */
function valueOf(scrape: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = scrape.samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

function sumOf(scrape: Scrape, name: string): number {
  return matching(scrape, name).reduce((total, s) => total + s.value, 0);
}

// --- Helpers ---

/** Waits until every observed request has settled and been recorded: an event, not a poll. */
async function settled(metrics: LlmuxMetrics): Promise<void> {
  await metrics.whenRecorded();
}

async function scrape(metrics: LlmuxMetrics): Promise<Scrape> {
  await settled(metrics);
  return parsePrometheus(await metrics.registry.metrics());
}

function usageOfStream(text: string): { prompt_tokens: number; completion_tokens: number } {
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const frame = JSON.parse(line.slice(6)) as {
      usage?: { prompt_tokens: number; completion_tokens: number };
    };
    if (frame.usage) return frame.usage;
  }
  throw new Error('no usage frame in the stream');
}

describe.each(expressVersions)('createMetrics on %s', (_label, express: ExpressFactory) => {
  let upstream: MockUpstream;
  let closers: (() => Promise<void>)[];

  // A mock per test, closed first so a stream a failed test left running cannot hold the relay.
  beforeEach(async () => {
    upstream = await createMockUpstream();
    closers = [];
  });
  afterEach(async () => {
    await upstream.close();
    await Promise.all(closers.map((close) => close()));
  });

  /** The relay behind auth and a gate, with metrics observing it; `/metrics` is mounted ahead of them. */
  function gateway(options: MetricsOptions = {}) {
    const metrics = createMetrics(options);
    const pool = upstreamPool({
      upstreams: [{ url: `${upstream.url}/v1`, apiKey: UPSTREAM_KEY, name: 'primary' }],
    });
    const gate = concurrencyGate({ max: 4 });
    // A fine-tune the catalog cannot know, priced by the host.
    const auth = keyAuth({
      keys: [{ id: KEY_ID, key: CLIENT_KEY }],
      pricing: { 'my-finetune-2024': { inputPerMTokUsd: 3, outputPerMTokUsd: 12 } },
    });
    const relay = streamRelay({
      upstream: pool,
      retry: retry({ attempts: 2, baseDelayMs: 1, maxDelayMs: 2 }),
    });
    metrics.watchPool(pool);
    metrics.watchGate(gate, 'relay');
    const app = express();
    // Ahead of the middleware, so a scrape does not observe itself.
    app.get('/metrics', metricsHandler(metrics.registry));
    app.use(metrics.middleware());
    app.post(CHAT, bodyLimit({ maxBytes: 4096 }), auth, gate, relay);
    app.get('/boom', () => {
      throw new Error('handler bug');
    });
    app.use(recovery({ logger: silent }));
    const close = async () => {
      await Promise.all([relay.close(), auth.close(), gate.close(), metrics.close()]);
    };
    closers.push(close);
    return { app, metrics, close };
  }

  const authorized = (app: Parameters<typeof request>[0]) =>
    request(app).post(CHAT).set('Authorization', `Bearer ${CLIENT_KEY}`);

  /** Success, stream, 401, 413 and an upstream 500 (retried once); returns their bodies and ids. */
  async function relayFew(app: Parameters<typeof request>[0]) {
    const ok = await authorized(app).set('x-request-id', REQUEST_ID).send(chat());
    expect(ok.status).toBe(200);
    const stream = await authorized(app)
      .send(chat({ stream: true, stream_options: { include_usage: true } }))
      .buffer(true)
      .parse((res, done) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => done(null, text));
      });
    expect(stream.status).toBe(200);
    const unauthorized = await request(app).post(CHAT).set('Authorization', 'Bearer sk-wrong').send(chat());
    expect(unauthorized.status).toBe(401);
    const tooLarge = await authorized(app).send(chat({ padding: 'x'.repeat(8192) }));
    expect(tooLarge.status).toBe(413);
    upstream.enqueue({ status: 500 }, { status: 500 });
    const failed = await authorized(app).send(chat());
    expect(failed.status).toBe(502);
    const ids = [ok, stream, unauthorized, tooLarge, failed].map((res) =>
      String(res.headers['x-request-id']),
    );
    const usage = [
      (ok.body as { usage: { prompt_tokens: number; completion_tokens: number } }).usage,
      usageOfStream(stream.body as string),
    ];
    return { ids, usage };
  }

  it('serves Prometheus text with the expected series after a few relayed requests', async () => {
    const { app, metrics, close } = gateway();
    const { usage } = await relayFew(app);
    await settled(metrics);
    const res = await request(app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const m = parsePrometheus(res.text);

    const route = { route: CHAT, model: 'gpt-4o-mini' };
    expect(valueOf(m, 'llmux_requests_total', { ...route, status_class: '2xx', code: 'none' })).toBe(2);
    expect(
      valueOf(m, 'llmux_requests_total', { ...route, status_class: '4xx', code: 'invalid_api_key' }),
    ).toBe(1);
    expect(
      valueOf(m, 'llmux_requests_total', { ...route, status_class: '5xx', code: 'upstream_error' }),
    ).toBe(1);
    // The body was refused unread, so its model is unknown.
    expect(
      valueOf(m, 'llmux_requests_total', {
        route: CHAT,
        model: 'none',
        status_class: '4xx',
        code: 'body_too_large',
      }),
    ).toBe(1);
    expect(sumOf(m, 'llmux_requests_total')).toBe(5);

    expect(valueOf(m, 'llmux_request_duration_seconds_count', route)).toBe(4);
    expect(valueOf(m, 'llmux_request_duration_seconds_count', { route: CHAT, model: 'none' })).toBe(1);
    expect(valueOf(m, 'llmux_time_to_first_byte_seconds_count', { model: 'gpt-4o-mini' })).toBe(2);
    expect(valueOf(m, 'llmux_time_to_first_byte_seconds_bucket', { model: 'gpt-4o-mini', le: '+Inf' })).toBe(
      2,
    );

    const prompt = usage[0]!.prompt_tokens + usage[1]!.prompt_tokens;
    const completion = usage[0]!.completion_tokens + usage[1]!.completion_tokens;
    expect(prompt).toBeGreaterThan(0);
    expect(valueOf(m, 'llmux_prompt_tokens_total', { model: 'gpt-4o-mini' })).toBe(prompt);
    expect(valueOf(m, 'llmux_completion_tokens_total', { model: 'gpt-4o-mini' })).toBe(completion);
    // gpt-4o-mini: $0.15 in, $0.60 out per million tokens, settled by keyAuth after the response closed.
    expect(valueOf(m, 'llmux_spend_usd_total', { model: 'gpt-4o-mini' })).toBeCloseTo(
      (prompt * 0.15 + completion * 0.6) / 1e6,
      12,
    );

    expect(valueOf(m, 'llmux_in_flight_requests')).toBe(0);
    expect(valueOf(m, 'llmux_gate_queue_depth', { gate: 'relay' })).toBe(0);
    expect(valueOf(m, 'llmux_gate_in_flight', { gate: 'relay' })).toBe(0);
    expect(valueOf(m, 'llmux_gate_wait_seconds_count')).toBe(3);
    expect(valueOf(m, 'llmux_retries_total', { reason: 'server' })).toBe(1);
    expect(valueOf(m, 'llmux_upstream_requests_total', { upstream: 'primary', outcome: 'ok' })).toBe(2);
    expect(valueOf(m, 'llmux_upstream_requests_total', { upstream: 'primary', outcome: 'server' })).toBe(2);
    expect(valueOf(m, 'llmux_upstream_state', { upstream: 'primary', state: 'healthy' })).toBe(1);
    expect(valueOf(m, 'llmux_upstream_state', { upstream: 'primary', state: 'cooling' })).toBe(0);
    expect(valueOf(m, 'llmux_recovered_panics_total')).toBe(0);
    expect(valueOf(m, 'llmux_bodies_refused_total', { code: 'body_too_large' })).toBe(1);
    expect(valueOf(m, 'llmux_auth_failures_total', { reason: 'invalid_api_key' })).toBe(1);
    // An upstream's failure is not an auth failure.
    expect(sumOf(m, 'llmux_auth_failures_total')).toBe(1);

    expect(Object.fromEntries(m.types)).toMatchObject({
      llmux_requests_total: 'counter',
      llmux_request_duration_seconds: 'histogram',
      llmux_time_to_first_byte_seconds: 'histogram',
      llmux_in_flight_requests: 'gauge',
      llmux_upstream_state: 'gauge',
      llmux_gate_wait_seconds: 'histogram',
    });
    await close();
  });

  it('puts no key, key id or request id in any label', async () => {
    const { app, metrics, close } = gateway();
    const { ids } = await relayFew(app);
    const m = await scrape(metrics);
    const values = m.samples.flatMap((s) => Object.values(s.labels));
    expect(values.length).toBeGreaterThan(0);
    for (const secret of [KEY_ID, CLIENT_KEY, UPSTREAM_KEY, REQUEST_ID, 'sk-wrong', ...ids]) {
      expect(values.filter((value) => value.includes(secret))).toEqual([]);
    }
    await close();
  });

  it('labels a model outside the known set as other', async () => {
    const { app, metrics, close } = gateway({ models: ['gpt-4o'] });
    expect((await authorized(app).send(chat({ model: 'my-finetune-2024' }))).status).toBe(200);
    expect((await authorized(app).send(chat({ model: 'gpt-4o' }))).status).toBe(200);
    const m = await scrape(metrics);
    const models = new Set(matching(m, 'llmux_requests_total').map((s) => s.labels.model));
    expect(models).toEqual(new Set(['other', 'gpt-4o']));
    expect(
      valueOf(m, 'llmux_requests_total', { route: CHAT, model: 'other', status_class: '2xx', code: 'none' }),
    ).toBe(1);
    await close();
  });

  it('labels routes without their query and ids, and anything else as other', async () => {
    const metrics = createMetrics({ routes: ['/healthz'] });
    const app = express();
    app.use(metrics.middleware());
    app.get(['/v1/models', '/v1/models/:model', '/healthz', '/users/:id'], (_req, res) => {
      res.json({});
    });
    for (const path of ['/v1/models?limit=2', '/v1/models/gpt-4o', '/healthz', '/users/u-123', '/nowhere']) {
      await request(app).get(path);
    }
    const m = await scrape(metrics);
    const routes = matching(m, 'llmux_requests_total').map(
      (s) => `${s.labels.route} ${s.labels.status_class}`,
    );
    expect(routes.sort()).toEqual(
      ['/healthz 2xx', '/v1/models 2xx', '/v1/models/:model 2xx', 'other 2xx', 'other 4xx'].sort(),
    );
    expect(
      valueOf(m, 'llmux_requests_total', {
        route: 'other',
        model: 'none',
        status_class: '2xx',
        code: 'none',
      }),
    ).toBe(1);
  });

  it('counts a recovered handler failure as a panic', async () => {
    const { app, metrics, close } = gateway();
    expect((await request(app).get('/boom')).status).toBe(500);
    const m = await scrape(metrics);
    expect(valueOf(m, 'llmux_recovered_panics_total')).toBe(1);
    expect(
      valueOf(m, 'llmux_requests_total', {
        route: 'other',
        model: 'none',
        status_class: '5xx',
        code: 'internal_error',
      }),
    ).toBe(1);
    await close();
  });

  it('records a request once even when its middleware is mounted twice', async () => {
    const metrics = createMetrics();
    expect(metrics.middleware()).toBe(metrics.middleware());
    const app = express();
    app.use(metrics.middleware());
    const router = express.Router();
    router.use(metrics.middleware());
    router.get('/v1/models', (_req, res) => {
      res.json({});
    });
    app.use(router);
    await request(app).get('/v1/models');
    const m = await scrape(metrics);
    expect(sumOf(m, 'llmux_requests_total')).toBe(1);
    expect(valueOf(m, 'llmux_in_flight_requests')).toBe(0);
  });

  it('brings in_flight_requests back to 0 when the client leaves mid-stream', async () => {
    const { app, metrics, close } = gateway();
    upstream.setBehaviour({ chunks: 5, stallAfterChunks: 1 });
    const server = await listen(app);
    await postAndLeave(server.port, chat({ stream: true }), {
      path: CHAT,
      headers: { authorization: `Bearer ${CLIENT_KEY}` },
      timeoutMs: 2_000,
    });
    const m = await scrape(metrics);
    expect(valueOf(m, 'llmux_in_flight_requests')).toBe(0);
    expect(sumOf(m, 'llmux_requests_total')).toBe(1);
    expect(valueOf(m, 'llmux_gate_in_flight', { gate: 'relay' })).toBe(0);
    await server.close();
    await close();
  });
});

describe('createMetrics registries', () => {
  it('gives two instances without a registry private registries that never collide', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(a.registry).not.toBe(b.registry);
    const express = expressVersions[0]![1];
    const app = express();
    app.use(a.middleware());
    app.get('/v1/models', (_req, res) => {
      res.json({});
    });
    await request(app).get('/v1/models');
    expect(sumOf(await scrape(a), 'llmux_requests_total')).toBe(1);
    expect(sumOf(await scrape(b), 'llmux_requests_total')).toBe(0);
  });

  it("registers on the host's registry, next to its own metrics", async () => {
    const registry = new Registry();
    const metrics = createMetrics({ registry, prefix: 'gateway_' });
    expect(metrics.registry).toBe(registry);
    const text = await registry.metrics();
    expect(parsePrometheus(text).types.get('gateway_requests_total')).toBe('counter');
    expect(() => createMetrics({ registry, prefix: 'gateway_' })).toThrow(
      /registry already has a metric named gateway_requests_total/,
    );
    const second = createMetrics({ registry, prefix: 'other_' });
    expect(second.registry).toBe(registry);
  });

  it('serves a registry with its content type, and 500 when a collect callback throws', async () => {
    const metrics = createMetrics();
    metrics.watchGate({
      stats: () => {
        throw new Error('gate is broken');
      },
    });
    const express = expressVersions[0]![1];
    const app = express();
    app.get('/metrics', metrics.handler());
    const res = await request(app).get('/metrics');
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ error: { code: 'internal_error' } });
  });

  it('reads watched gates and pools at scrape time, and stops when unwatched', async () => {
    const metrics = createMetrics();
    let queued = 3;
    const unwatchGate = metrics.watchGate({ stats: () => ({ inFlight: 2, queued, keys: 0 }) }, 'api');
    const pool = upstreamPool({ upstreams: [{ url: 'http://127.0.0.1:9/v1', name: 'a' }] });
    const unwatchPool = metrics.watchPool(pool);
    expect(valueOf(await scrape(metrics), 'llmux_gate_queue_depth', { gate: 'api' })).toBe(3);
    queued = 5;
    pool.disable('a');
    const m = await scrape(metrics);
    expect(valueOf(m, 'llmux_gate_queue_depth', { gate: 'api' })).toBe(5);
    expect(valueOf(m, 'llmux_gate_in_flight', { gate: 'api' })).toBe(2);
    expect(valueOf(m, 'llmux_upstream_state', { upstream: 'a', state: 'disabled' })).toBe(1);
    expect(valueOf(m, 'llmux_upstream_state', { upstream: 'a', state: 'healthy' })).toBe(0);
    expect(() => metrics.watchGate({ stats: () => ({ inFlight: 0, queued: 0, keys: 0 }) }, 'api')).toThrow(
      TypeError,
    );
    expect(() =>
      metrics.watchPool(upstreamPool({ upstreams: [{ url: 'http://127.0.0.1:9/v1', name: 'a' }] })),
    ).toThrow(/upstream named "a" is already watched/);
    unwatchGate();
    unwatchPool();
    const after = await scrape(metrics);
    expect(matching(after, 'llmux_gate_queue_depth')).toEqual([]);
    expect(matching(after, 'llmux_upstream_state')).toEqual([]);
    await metrics.close();
    await metrics.close();
  });

  it.each<[string, MetricsOptions, RegExp]>([
    ['a prefix with a dash', { prefix: 'llmux-' }, /prefix/],
    ['a registry that is not one', { registry: {} as Registry }, /registry/],
    ['an empty model name', { models: ['gpt-4o', ''] }, /models\[1\]/],
    ['upstreams that are not an array', { upstreams: 'primary' as unknown as string[] }, /upstreams/],
    ['a route without a slash', { routes: ['metrics'] }, /routes\[0\]/],
    ['decreasing buckets', { durationBuckets: [1, 0.5] }, /durationBuckets\[1\]/],
    ['empty buckets', { ttfbBuckets: [] }, /ttfbBuckets/],
    ['a non-finite bucket', { ttfbBuckets: [1, Infinity] }, /ttfbBuckets\[1\]/],
  ])('refuses %s with a TypeError naming the option', (_what, options, message) => {
    expect(() => createMetrics(options)).toThrow(TypeError);
    expect(() => createMetrics(options)).toThrow(message);
  });

  it('refuses a metricsHandler without a registry', () => {
    expect(() => metricsHandler(undefined as unknown as Registry)).toThrow(TypeError);
  });
});
