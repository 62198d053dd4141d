// Which upstream errors are the request's fault and which the upstream's: a pool of two keys in
// front of a real loopback mock, every error class answered by the mock as the provider words it.
// A request's own fault reaches its client and leaves the pool healthy; a 429 cools one member as
// long as the upstream's headers say; only a 401 disables. The two attacks of issue 14 are here.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay } from '../lib/middleware/stream-relay.js';
import { retry } from '../lib/retry/policy.js';
import { UpstreamPool } from '../lib/upstream/pool.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';
import { llmux } from '../lib/preset.js';

const KEY_A = 'sk-member-a-0123456789abcdef';
const KEY_B = 'sk-member-b-0123456789abcdef';
const T0 = Date.parse('2026-12-04T12:00:00.000Z');

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

/** An error body in OpenAI's shape. */
const openaiError = (
  status: number,
  error: { message: string } & Record<string, unknown>,
  headers?: Record<string, string>,
) => ({ status, body: { error: { param: null, ...error } }, headers }) satisfies MockBehaviour;

const MODEL_ACCESS_403 = openaiError(403, {
  message: 'Project `proj_abc123` does not have access to model `gpt-4o`',
  type: 'invalid_request_error',
  code: 'model_not_found',
});
const MODEL_MISSING_404 = openaiError(404, {
  message: 'The model `gpt-5-secret` does not exist or you do not have access to it.',
  type: 'invalid_request_error',
  code: 'model_not_found',
});
const CONTEXT_400 = openaiError(400, {
  message:
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 190000 tokens.",
  type: 'invalid_request_error',
  code: 'context_length_exceeded',
  param: 'messages',
});
const TOO_LARGE_429 = openaiError(429, {
  message:
    'Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 50000. The input or output tokens must be reduced in order to run successfully.',
  type: 'tokens',
  code: 'rate_limit_exceeded',
});

describe('upstream error classes, through a pool of two keys', () => {
  let mock: MockUpstream;
  let now: number;
  let pool: UpstreamPool;
  let relay: ReturnType<typeof streamRelay>;
  let app: express.Express;

  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });
  beforeEach(async () => {
    await relay?.close();
    mock.reset();
    now = T0;
    pool = new UpstreamPool({
      upstreams: [
        { url: `${mock.url}/v1`, apiKey: KEY_A, name: 'a' },
        { url: `${mock.url}/v1`, apiKey: KEY_B, name: 'b' },
      ],
      clock: () => now,
    });
    relay = streamRelay({ upstream: pool, retry: retry({ attempts: 3, baseDelayMs: 0, maxDelayMs: 0 }) });
    app = express();
    app.post('/v1/chat/completions', bodyLimit(), relay);
  });
  afterAll(async () => {
    await relay?.close();
  });

  const send = (body: object = chat()) => request(app).post('/v1/chat/completions').send(body);
  const members = () => mock.requests.map((r) => (r.headers.authorization === `Bearer ${KEY_A}` ? 'a' : 'b'));
  const states = () => pool.status().map((s) => `${s.name}:${s.state}`);

  /** After the error: both members serve ordinary requests again. */
  async function poolServesBoth(): Promise<void> {
    mock.reset();
    for (let i = 0; i < 4; i++) expect((await send()).status).toBe(200);
    expect(new Set(members())).toEqual(new Set(['a', 'b']));
  }

  it.each([
    ['a 403 for a model the project cannot use', MODEL_ACCESS_403, 403, 'model_not_found'],
    ['a 404 for a model that does not exist', MODEL_MISSING_404, 404, 'model_not_found'],
    ['a 400 for a prompt over the context window', CONTEXT_400, 400, 'context_length_exceeded'],
    ['a 429 "Request too large" over the per-request TPM', TOO_LARGE_429, 413, 'request_too_large'],
  ])(
    '%s is the request’s fault: its client gets it, no other member is tried, none cools',
    async (_name, behaviour, status, code) => {
      mock.enqueue(behaviour);
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error.code).toBe(code);
      // Nothing to wait for: no Retry-After, and a status no SDK retries. The message is the upstream's.
      expect(res.headers['retry-after']).toBeUndefined();
      expect(res.body.error.message).toBe(behaviour.body.error.message);
      expect(mock.requests).toHaveLength(1);
      expect(states()).toEqual(['a:healthy', 'b:healthy']);
      await poolServesBoth();
    },
  );

  it('a 429 with rate-limit headers cools one member until the spent window resets, then serves', async () => {
    mock.enqueue(
      openaiError(
        429,
        { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' },
        {
          'x-ratelimit-limit-requests': '500',
          'x-ratelimit-remaining-requests': '0',
          'x-ratelimit-reset-requests': '6m0s',
          'x-ratelimit-limit-tokens': '30000',
          'x-ratelimit-remaining-tokens': '29000',
          'x-ratelimit-reset-tokens': '120ms',
        },
      ),
    );
    const res = await send();
    expect(res.status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    const a = pool.status().find((s) => s.name === 'a')!;
    expect(a.state).toBe('cooling');
    expect(a.cooldownRemainingMs).toBe(360_000);
    expect(pool.status().find((s) => s.name === 'b')!.state).toBe('healthy');
    now += 360_000;
    await poolServesBoth();
  });

  it("a 402 billing_error (the relay's account out of credit) cools that member and serves from the other", async () => {
    mock.enqueue({
      status: 402,
      body: { type: 'error', error: { type: 'billing_error', message: 'Your credit balance is too low' } },
    });
    const res = await send();
    expect(res.status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    expect(states()).toEqual(['a:cooling', 'b:healthy']);
  });

  it("a 429 with Anthropic's reset instants cools the member until that instant", async () => {
    mock.enqueue({
      status: 429,
      body: { type: 'error', error: { type: 'rate_limit_error', message: 'rate limited' } },
      headers: {
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '0',
        'anthropic-ratelimit-requests-reset': new Date(Date.now() + 42_000).toISOString(),
      },
    });
    expect((await send()).status).toBe(200);
    const a = pool.status().find((s) => s.name === 'a')!;
    expect(a.state).toBe('cooling');
    // Up to 42 s, less the wall time the request took (generous: a loaded machine is slow).
    expect(a.cooldownRemainingMs).toBeGreaterThan(30_000);
    expect(a.cooldownRemainingMs).toBeLessThanOrEqual(42_000);
  });

  it('a 429 with Retry-After cools the member as long as it says, and the client hears it', async () => {
    const once = streamRelay({ upstream: pool });
    const single = express().post('/v1/chat/completions', bodyLimit(), once);
    mock.enqueue({
      ...openaiError(429, { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' }),
      retryAfter: '2',
    });
    const res = await request(single).post('/v1/chat/completions').send(chat());
    await once.close();
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('2');
    expect(pool.status().find((s) => s.name === 'a')!.cooldownRemainingMs).toBe(2_000);
  });

  it('a 429 whose Retry-After is long is retried at once on the other member, not waited out', async () => {
    // Before: the retry slept the member's Retry-After (or gave up past maxRetryAfterMs) although
    // the other member was free.
    mock.enqueue({
      ...openaiError(429, { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' }),
      retryAfter: '30',
    });
    const res = await send();
    expect(res.status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    expect(pool.status().find((s) => s.name === 'a')!.cooldownRemainingMs).toBe(30_000);
  });

  it('a 401 invalid_api_key disables the member; the request is served by the other', async () => {
    mock.enqueue(
      openaiError(401, {
        message: 'Incorrect API key provided',
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      }),
    );
    const res = await send();
    expect(res.status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    expect(states()).toEqual(['a:disabled', 'b:healthy']);
  });

  it('a 401 on the only member tries: the client gets 502 upstream_auth_error, never the upstream key', async () => {
    mock.setBehaviour(
      openaiError(401, {
        message: `Incorrect API key provided: ${KEY_A}`,
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      }),
    );
    const res = await send();
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_auth_error');
    expect(JSON.stringify(res.body)).not.toContain(KEY_A);
  });

  describe('the attacks of issue 14 (regressions)', () => {
    it('requests for a model the project cannot use never disable the pool', async () => {
      // Before: each 403 disabled one member; two such requests left the pool with none.
      mock.setBehaviour((r) =>
        (r.body as { model?: string }).model === 'gpt-4o-forbidden' ? MODEL_ACCESS_403 : {},
      );
      for (let i = 0; i < 4; i++) expect((await send(chat({ model: 'gpt-4o-forbidden' }))).status).toBe(403);
      expect(states()).toEqual(['a:healthy', 'b:healthy']);
      const after = await Promise.all(Array.from({ length: 10 }, () => send()));
      expect(after.map((r) => r.status)).toEqual(Array(10).fill(200));
    });

    it('one oversized prompt cools no member: the next 35 ordinary requests are all served', async () => {
      // Before: retry walked the pool and each 429 cooled one member for 30 s.
      mock.setBehaviour((r) => (r.rawBody.length > 10_000 ? TOO_LARGE_429 : {}));
      const huge = await send(chat({ messages: [{ role: 'user', content: 'x'.repeat(20_000) }] }));
      expect(huge.status).toBe(413);
      expect(mock.requests).toHaveLength(1);
      const after = await Promise.all(Array.from({ length: 35 }, () => send()));
      expect(after.filter((r) => r.status !== 200)).toHaveLength(0);
      expect(states()).toEqual(['a:healthy', 'b:healthy']);
    });
  });
});

describe('upstream error classes in the Anthropic protocol', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it("a 413 request_too_large and a 400 prompt too long reach an Anthropic client in Anthropic's shape", async () => {
    const pool = new UpstreamPool({ upstreams: [{ url: `${mock.url}/v1`, apiKey: KEY_A, name: 'a' }] });
    const router = llmux({ upstream: pool, auth: false });
    const app = express().use(router);
    const message = {
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    };
    mock.enqueue(
      {
        status: 413,
        body: {
          type: 'error',
          error: { type: 'request_too_large', message: 'Request exceeds the maximum size' },
        },
      },
      {
        status: 400,
        body: {
          type: 'error',
          error: {
            type: 'invalid_request_error',
            message: 'prompt is too long: 210000 tokens > 200000 maximum',
          },
        },
      },
    );
    const tooLarge = await request(app).post('/v1/messages').send(message);
    const tooLong = await request(app).post('/v1/messages').send(message);
    await router.close();
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'prompt is too long: 210000 tokens > 200000 maximum' },
    });
    expect(pool.status()[0]!.state).toBe('healthy');
  });
});
