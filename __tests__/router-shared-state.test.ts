// A model router's one pool shared between two instances through sharePoolState on a real Redis
// (REDIS_URL, default 127.0.0.1:6379), in front of a real loopback mock: what the upstream says of
// its own health (a 401, a 429 cooldown) reaches the other instance; what a request caused (a
// model its project cannot use, a prompt over the per-request limit) never leaves the instance.
import { afterAll, beforeAll, beforeEach, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay } from '../lib/middleware/stream-relay.js';
import { sharePoolState } from '../lib/redis.js';
import { retry } from '../lib/retry/policy.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';
import { modelRouter } from '../lib/upstream/router.js';
import { chat, waitFor } from './support/http.js';
import { requireRedis } from './support/redis.js';

// First, before any client: one clear failure when Redis is down (see support/redis.ts).
const redis = await requireRedis();
const { describe } = redis;
/** Every key this file writes is under this prefix; afterAll deletes them. */
const RUN_PREFIX = `llmux-test:router-state:${process.pid}:${Date.now()}:`;
/** Bound of every wait for pub/sub delivery. */
const WAIT_MS = 5_000;

const KEY_A = 'sk-deploy-a-0123456789abcdef';
const KEY_B = 'sk-deploy-b-0123456789abcdef';
const KEY_SENTINEL = 'sk-deploy-s-0123456789abcdef';

const openaiError = (status: number, error: Record<string, unknown>, extra: Partial<MockBehaviour> = {}) =>
  ({ status, body: { error: { param: null, ...error } }, ...extra }) satisfies MockBehaviour;

const MODEL_ACCESS_403 = openaiError(403, {
  message: 'Project `proj_abc123` does not have access to model `gpt-4o`',
  type: 'invalid_request_error',
  code: 'model_not_found',
});
const TOO_LARGE_429 = openaiError(
  429,
  {
    message:
      'Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 50000. The input or output tokens must be reduced in order to run successfully.',
    type: 'tokens',
    code: 'rate_limit_exceeded',
  },
  // The upstream's headers come with it: they must not cool the member either.
  {
    headers: {
      'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-tokens': '30000',
      'x-ratelimit-reset-tokens': '0s',
    },
  },
);
const CONTEXT_400 = openaiError(400, {
  message:
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 190000 tokens.",
  type: 'invalid_request_error',
  code: 'context_length_exceeded',
  param: 'messages',
});
const INVALID_KEY_401 = openaiError(401, {
  message: 'Incorrect API key provided',
  type: 'invalid_request_error',
  code: 'invalid_api_key',
});
const RATE_LIMITED_429 = openaiError(
  429,
  { message: 'Rate limit reached for requests', type: 'requests', code: 'rate_limit_exceeded' },
  {
    headers: {
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '20s',
    },
  },
);

const shared = redis.client({ enableOfflineQueue: false, maxRetriesPerRequest: 1 });
let mock: MockUpstream;
let prefixes = 0;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  mock = await createMockUpstream();
});
beforeEach(() => {
  mock.reset();
});
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
  await mock?.close();
  let cursor = '0';
  do {
    const [next, keys] = await shared.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await shared.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await shared.quit();
});

/**
 * One app instance: its own model router (group gpt-4o of deployments a and b, and a group of one
 * deployment, sentinel, whose changes serve as a barrier), its relay, and its pool shared under
 * `prefix`.
 */
function instance(prefix: string) {
  const router = modelRouter({
    groups: [
      {
        name: 'gpt-4o',
        deployments: [
          { url: `${mock.url}/v1`, apiKey: KEY_A, name: 'a' },
          { url: `${mock.url}/v1`, apiKey: KEY_B, name: 'b' },
        ],
      },
      { name: 'sentinel', deployments: [{ url: `${mock.url}/v1`, apiKey: KEY_SENTINEL, name: 'sentinel' }] },
    ],
  });
  const relay = streamRelay({
    upstream: router,
    retry: retry({ attempts: 2, baseDelayMs: 0, maxDelayMs: 0 }),
  });
  const app = express().post('/v1/chat/completions', bodyLimit(), relay);
  const sharing = sharePoolState(router.pool, { url: redis.url, prefix });
  closers.push(
    () => sharing.close(),
    () => relay.close(),
  );
  const status = (name: string) => router.status().find((s) => s.name === name)!;
  const send = (body: object = chat({ model: 'gpt-4o' })) =>
    request(app).post('/v1/chat/completions').send(body);
  return { router, sharing, status, send };
}

/** Two instances sharing a fresh prefix, both loaded. */
async function twoInstances() {
  const prefix = `${RUN_PREFIX}${++prefixes}:`;
  const a = instance(prefix);
  const b = instance(prefix);
  await Promise.all([a.sharing.ready(), b.sharing.ready()]);
  return { prefix, first: a, second: b };
}

/** The deployment each request reached, in order. */
const members = () =>
  mock.requests.map((r) => {
    const key = r.headers.authorization;
    return key === `Bearer ${KEY_A}` ? 'a' : key === `Bearer ${KEY_B}` ? 'b' : 'sentinel';
  });

describe('a model router’s pool shared between instances', () => {
  it.each([
    ['a 403 for a model the project cannot use', MODEL_ACCESS_403, 403],
    ['a 429 "Request too large" over the per-request TPM', TOO_LARGE_429, 413],
    ['a 400 for a prompt over the context window', CONTEXT_400, 400],
  ])("keeps %s on one instance from changing the other's state", async (_name, behaviour, status) => {
    const { prefix, first, second } = await twoInstances();
    mock.enqueue(behaviour);
    expect((await first.send()).status).toBe(status);
    expect(members()).toEqual(['a']);
    expect([first.status('a').state, first.status('b').state]).toEqual(['healthy', 'healthy']);

    // A barrier: a change first makes afterwards, once the second has it, anything the error
    // had written before it would have arrived too (one worker writes them in order).
    first.router.pool.disable('sentinel');
    await waitFor(() => second.status('sentinel').state === 'disabled', {
      timeoutMs: WAIT_MS,
      what: 'the sentinel’s disable on the second instance',
    });
    for (const name of ['a', 'b']) {
      expect(second.status(name)).toMatchObject({ state: 'healthy', cooldownRemainingMs: 0 });
      expect(await shared.exists(`${prefix}pool:state:${name}`)).toBe(0);
    }
    mock.reset();
    const answers = await Promise.all([1, 2, 3, 4].map(() => second.send()));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(new Set(members())).toEqual(new Set(['a', 'b']));
  });

  it('disables on the other instance a deployment whose key one instance saw refused (401)', async () => {
    const { first, second } = await twoInstances();
    mock.enqueue(INVALID_KEY_401);
    // The retry goes to b: the client is served.
    expect((await first.send()).status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    expect(first.status('a').state).toBe('disabled');
    await waitFor(() => second.status('a').state === 'disabled', {
      timeoutMs: WAIT_MS,
      what: 'the disable on the second instance',
    });
    expect(second.status('b').state).toBe('healthy');
    mock.reset();
    for (let i = 0; i < 3; i++) expect((await second.send()).status).toBe(200);
    expect(members()).toEqual(['b', 'b', 'b']);
  });

  it('cools on the other instance a deployment one instance saw a 429 from, until its window resets', async () => {
    const { first, second } = await twoInstances();
    mock.enqueue(RATE_LIMITED_429);
    expect((await first.send()).status).toBe(200);
    expect(members()).toEqual(['a', 'b']);
    expect(first.status('a').state).toBe('cooling');
    await waitFor(() => second.status('a').state === 'cooling', {
      timeoutMs: WAIT_MS,
      what: 'the cooldown on the second instance',
    });
    // The same instant on both, 20 s after the 429 (less the time the test took since).
    expect(second.status('a').cooldownRemainingMs).toBeGreaterThan(15_000);
    expect(second.status('a').cooldownRemainingMs).toBeLessThanOrEqual(20_000);
    expect(second.status('b').state).toBe('healthy');
    mock.reset();
    for (let i = 0; i < 3; i++) expect((await second.send()).status).toBe(200);
    expect(members()).toEqual(['b', 'b', 'b']);
  });
});
