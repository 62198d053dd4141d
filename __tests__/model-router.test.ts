// modelRouter: requested models (exact, alias, glob) to groups of deployments, the model rewritten
// per deployment, billing, tracking and the answer under the model that served, and fallbacks
// across groups (JSON and stream) on what the upstream caused, never on what the request did.
// Two real loopback mocks stand for two providers; the preset with a memory key store bills.
import { hashApiKey } from '../lib/keys/hash.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { MemoryKeyStore } from '../lib/keys/memory-store.js';
import { llmux, type LlmuxRouter } from '../lib/preset.js';
import { costOf, type ModelPrice } from '../lib/pricing/price.js';
import { DEFAULT_PRICING } from '../lib/pricing/catalog.js';
import { RequestTracker } from '../lib/tracking/tracker.js';
import { modelRouter, ModelRouter, type ModelRouterOptions } from '../lib/upstream/router.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { usageOf } from '../lib/usage.js';
import { sseEvents } from './support/http.js';

const OWN_PRICE: ModelPrice = { inputPerMTokUsd: 1, outputPerMTokUsd: 2 };
const USAGE = { promptTokens: 1000, completionTokens: 100 };

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 100,
  ...extra,
});

describe('modelRouter options', () => {
  const one = { url: 'http://127.0.0.1:1/v1' };
  it.each<[string, ModelRouterOptions, RegExp]>([
    ['no groups', { groups: [] }, /groups must be a non-empty array/],
    ['a group without deployments', { groups: [{ name: 'a', deployments: [] }] }, /deployments/],
    [
      'a duplicate group',
      {
        groups: [
          { name: 'a', deployments: [one] },
          { name: 'a', deployments: [one] },
        ],
      },
      /unique/,
    ],
    [
      'a fallback to no group',
      { groups: [{ name: 'a', deployments: [one], fallbacks: ['b'] }] },
      /fallbacks/,
    ],
    [
      'a fallback to itself',
      { groups: [{ name: 'a', deployments: [one], fallbacks: ['a'] }] },
      /other groups/,
    ],
    [
      'an alias two groups claim',
      {
        groups: [
          { name: 'a', models: ['fast'], deployments: [one] },
          { name: 'b', models: ['FAST'], deployments: [one] },
        ],
      },
      /no other group has/,
    ],
    [
      'an unknown defaultGroup',
      { groups: [{ name: 'a', deployments: [one] }], defaultGroup: 'z' },
      /defaultGroup/,
    ],
    ['a group name with a star', { groups: [{ name: 'gpt-*', deployments: [one] }] }, /without \*/],
  ])('refuses %s with a TypeError naming it', (_what, options, message) => {
    expect(() => modelRouter(options)).toThrow(message);
    expect(() => modelRouter(options)).toThrow(TypeError);
  });

  it('names deployments <group>#<index> in one pool, with the model each is asked for', () => {
    const router = modelRouter({
      groups: [
        { name: 'gpt-4o', deployments: [one, { ...one, model: 'gpt-4o-prod' }] },
        { name: 'small', deployments: [one] },
      ],
    });
    expect(router.status().map((s) => [s.name, s.model])).toEqual([
      ['gpt-4o#0', null],
      ['gpt-4o#1', 'gpt-4o-prod'],
      ['small#0', null],
    ]);
    expect(router.groupNames).toEqual(['gpt-4o', 'small']);
  });
});

describe('modelRouter through the preset', () => {
  let primary: MockUpstream;
  let secondary: MockUpstream;
  let store: MemoryKeyStore;
  let secret: string;
  let keyId: string;
  let tracker: RequestTracker;
  let gateway: LlmuxRouter | undefined;
  let router: ModelRouter;
  let now: number;

  beforeAll(async () => {
    [primary, secondary] = await Promise.all([createMockUpstream(), createMockUpstream()]);
  });
  afterAll(async () => {
    await Promise.all([primary.close(), secondary.close()]);
  });
  beforeEach(async () => {
    primary.reset();
    secondary.reset();
    primary.setBehaviour({ usage: USAGE });
    secondary.setBehaviour({ usage: USAGE });
    store = new MemoryKeyStore();
    secret = 'sk-llmux-router-test-0001';
    keyId = (
      await store.createKey({ name: 'k', hash: hashApiKey(secret), prefix: 'sk-llmux-rou', budgetUsd: 100 })
    ).id;
    now = Date.parse('2026-12-04T12:00:00.000Z');
  });
  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  /** A gateway routing by `options` (clock injected), keyed and tracked. */
  function start(options: Omit<ModelRouterOptions, 'clock'>, relay: Record<string, unknown> = {}) {
    router = modelRouter({ ...options, clock: () => now });
    tracker = new RequestTracker({ capacity: 100 });
    gateway = llmux({
      upstream: router,
      auth: { store },
      tracker,
      relay: { retry: { attempts: 2, baseDelayMs: 0, maxDelayMs: 0 }, ...relay },
    });
    return express().use(gateway);
  }
  const post = (app: express.Express, body: object, headers: Record<string, string> = {}) =>
    request(app)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${secret}`)
      .set(headers)
      .send(body);
  const spend = async () => {
    await gateway!.pieces.auth!.whenSettled();
    return (await store.getKey(keyId))!;
  };
  const catalogCost = (model: string) => costOf(DEFAULT_PRICING[model]!, usageOf(1000, 100));

  const twoGroups = (
    extra: Partial<ModelRouterOptions['groups'][number]> = {},
  ): Omit<ModelRouterOptions, 'clock'> => ({
    groups: [
      {
        name: 'gpt-4o',
        models: ['smart', 'gpt-4o-2024-*'],
        deployments: [{ url: `${primary.url}/v1`, apiKey: 'sk-primary-0123456789abcdef' }],
        fallbacks: ['backup'],
        ...extra,
      },
      {
        name: 'backup',
        deployments: [
          { url: `${secondary.url}/v1`, apiKey: 'sk-secondary-0123456789abcdef', model: 'gpt-4o-mini' },
        ],
      },
    ],
  });

  it('routes an exact name, an alias in any case and a glob to their group', async () => {
    const app = start(twoGroups());
    const served = [];
    for (const model of ['gpt-4o', 'SMART', 'gpt-4o-2024-08-06']) {
      const res = await post(app, chat(model));
      expect(res.status).toBe(200);
      served.push(res.headers['x-llmux-model']);
    }
    // The deployment names no model of its own: an alias is asked as its group's name (never sent
    // upstream), a glob match as the client's own model.
    const asked = primary.requests.map((r) => (r.body as { model: string }).model);
    expect(asked).toEqual(['gpt-4o', 'gpt-4o', 'gpt-4o-2024-08-06']);
    expect(served).toEqual(asked);
    expect(secondary.requests).toHaveLength(0);
  });

  it('lists its groups and exact aliases at GET /v1/models, asking no upstream', async () => {
    const app = start(twoGroups());
    const auth = { authorization: `Bearer ${secret}` };
    const list = await request(app).get('/v1/models').set(auth);
    expect(list.status).toBe(200);
    expect(list.body.object).toBe('list');
    expect(list.body.data.map((m: { id: string }) => m.id)).toEqual(['gpt-4o', 'smart', 'backup']);
    const one = await request(app).get('/v1/models/Smart').set(auth);
    expect(one.body).toEqual({ id: 'Smart', object: 'model', created: 0, owned_by: 'llmux' });
    const none = await request(app).get('/v1/models/claude-opus-4').set(auth);
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('model_not_found');
    expect((await request(app).get('/v1/models')).status).toBe(401);
    expect(primary.requests).toHaveLength(0);
  });

  it('answers 404 model_not_found for a model no group serves, before anything is reserved or sent', async () => {
    const app = start(twoGroups());
    const res = await post(app, chat('claude-opus-4'));
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect(primary.requests).toHaveLength(0);
    expect((await spend()).spendUsd).toBe(0);
  });

  it('sends the deployment its own model and bills, tracks and answers as that model', async () => {
    const app = start({
      groups: [
        {
          name: 'fast',
          deployments: [
            { url: `${secondary.url}/v1`, apiKey: 'sk-secondary-0123456789abcdef', model: 'gpt-4o-mini' },
          ],
        },
      ],
    });
    const res = await post(app, chat('fast', { temperature: 0.5 }));
    expect(res.status).toBe(200);
    expect(res.headers['x-llmux-model']).toBe('gpt-4o-mini');
    const sent = secondary.requests[0]!.body as Record<string, unknown>;
    // Only the model changed: the rest of the request is the client's.
    expect(sent).toMatchObject({ model: 'gpt-4o-mini', temperature: 0.5, max_tokens: 100 });
    const key = await spend();
    expect(key.spendUsd).toBeCloseTo(catalogCost('gpt-4o-mini'), 12);
    expect(key.spendByModel).toEqual({ 'gpt-4o-mini': key.spendUsd });
    await gateway!.pieces.auth!.whenSettled();
    expect(tracker.recent(1)[0]).toMatchObject({ model: 'fast', servedModel: 'gpt-4o-mini' });
    expect(tracker.models()).toEqual(['gpt-4o-mini']);
  });

  it("keeps the upstream's request id in the record, and answers with it when the client sent none", async () => {
    const app = start(twoGroups());
    primary.enqueue({ headers: { 'x-request-id': 'req_upstream_1' }, usage: USAGE });
    const res = await post(app, chat('gpt-4o'));
    expect(res.headers['x-request-id']).toBe('req_upstream_1');
    await tracker.whenRecorded();
    expect(tracker.recent(1)[0]!.upstreamRequestId).toBe('req_upstream_1');
  });

  it("bills a deployment's own price over the catalog's", async () => {
    const app = start({
      groups: [
        {
          name: 'gpt-4o',
          deployments: [
            { url: `${primary.url}/v1`, apiKey: 'sk-primary-0123456789abcdef', price: OWN_PRICE },
          ],
        },
      ],
    });
    expect((await post(app, chat('gpt-4o'))).status).toBe(200);
    expect((await spend()).spendUsd).toBeCloseTo(costOf(OWN_PRICE, usageOf(1000, 100)), 12);
  });

  it('refuses a request one of whose possible models has no price, naming that model', async () => {
    const app = start({
      groups: [
        {
          name: 'gpt-4o',
          deployments: [{ url: `${primary.url}/v1`, apiKey: 'sk-primary-0123456789abcdef' }],
          fallbacks: ['private'],
        },
        { name: 'private', deployments: [{ url: `${secondary.url}/v1`, model: 'my-finetune' }] },
      ],
    });
    const res = await post(app, chat('gpt-4o'));
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('model_not_priced');
    expect(res.body.error.message).toContain('my-finetune');
    expect(primary.requests).toHaveLength(0);
  });

  it('reserves for the dearest model a request may be served as', async () => {
    // gpt-4o (primary) is dearer than its fallback gpt-4o-mini: a budget below gpt-4o's
    // reservation refuses the request even though the fallback alone would fit.
    await store.updateKey(keyId, { budgetUsd: catalogCost('gpt-4o-mini') * 2 });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o'));
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('insufficient_quota');
  });

  it.each([
    ['a 500', { status: 500 }],
    ['a 429', { status: 429, retryAfter: '0' }],
    ['a 529 overload', { status: 529 }],
  ])(
    'falls back to the next group after %s on every try, billed as the model that served',
    async (_name, failure) => {
      primary.setBehaviour(failure);
      const app = start(twoGroups());
      const res = await post(app, chat('gpt-4o'));
      expect(res.status).toBe(200);
      expect(res.headers['x-llmux-model']).toBe('gpt-4o-mini');
      expect(secondary.requests).toHaveLength(1);
      const key = await spend();
      expect(key.spendByModel).toEqual({ 'gpt-4o-mini': key.spendUsd });
      expect(key.spendUsd).toBeCloseTo(catalogCost('gpt-4o-mini'), 12);
    },
  );

  it('falls back on a stream that failed before its first byte, and relays the fallback stream whole', async () => {
    primary.setBehaviour({ status: 503 });
    secondary.setBehaviour({ chunks: 5, usage: USAGE });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o', { stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers['x-llmux-model']).toBe('gpt-4o-mini');
    const events = sseEvents(res.text);
    expect(events.at(-1)!.data).toBe('[DONE]');
    const text = events
      .filter((e) => e.data !== '[DONE]')
      .map((e) => JSON.parse(e.data) as { choices: { delta?: { content?: string } }[] })
      .map((chunk) => chunk.choices[0]?.delta?.content ?? '')
      .join('');
    expect(text).toBe('tok0 tok1 tok2 tok3 tok4 ');
    expect((await spend()).spendByModel).toEqual({ 'gpt-4o-mini': catalogCost('gpt-4o-mini') });
  });

  it('falls back when the prompt is over the context window, at once, without retrying the group', async () => {
    primary.enqueue({
      status: 400,
      body: {
        error: {
          message: "This model's maximum context length is 128000 tokens.",
          type: 'invalid_request_error',
          code: 'context_length_exceeded',
          param: 'messages',
        },
      },
    });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o'));
    expect(res.status).toBe(200);
    expect(primary.requests).toHaveLength(1);
    expect(secondary.requests).toHaveLength(1);
  });

  it("never falls back on another request's own error: a model-access 403 reaches the client", async () => {
    primary.enqueue({
      status: 403,
      body: {
        error: { message: 'no access to model', type: 'invalid_request_error', code: 'model_not_found' },
      },
    });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o'));
    expect(res.status).toBe(403);
    expect(secondary.requests).toHaveLength(0);
    expect((await spend()).spendUsd).toBe(0);
  });

  it('never falls back once the stream reached the client', async () => {
    primary.setBehaviour({ chunks: 5, errorFrameAfterChunks: 2, usage: USAGE });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o', { stream: true }));
    expect(res.status).toBe(200);
    expect(res.text).toContain('tok1');
    expect(res.text).toContain('"error"');
    expect(secondary.requests).toHaveLength(0);
  });

  it('goes straight to the fallback while every member of the group is cooling', async () => {
    primary.enqueue({ status: 429, retryAfter: '60' });
    const app = start(twoGroups(), { retry: { attempts: 1 } });
    // The 429 cools the only member; with no retry the request itself falls back.
    expect((await post(app, chat('gpt-4o'))).status).toBe(200);
    primary.reset();
    expect((await post(app, chat('gpt-4o'))).headers['x-llmux-model']).toBe('gpt-4o-mini');
    expect(primary.requests).toHaveLength(0);
    now += 60_000;
    expect((await post(app, chat('gpt-4o'))).headers['x-llmux-model']).toBe('gpt-4o');
  });

  it('answers the last failure when no group is left to try', async () => {
    primary.setBehaviour({ status: 500 });
    secondary.setBehaviour({ status: 502 });
    const app = start(twoGroups());
    const res = await post(app, chat('gpt-4o'));
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_error');
    expect((await spend()).spendUsd).toBe(0);
  });

  describe('x-llmux-fallbacks', () => {
    const three = (): Omit<ModelRouterOptions, 'clock'> => ({
      clientFallbacks: true,
      groups: [
        { ...twoGroups().groups[0]!, fallbacks: ['backup', 'other'] },
        twoGroups().groups[1]!,
        { name: 'other', deployments: [{ url: `${secondary.url}/v1`, model: 'gpt-4.1-mini' }] },
      ],
    });

    it('chooses among the configured fallbacks, in the order the client names', async () => {
      primary.setBehaviour({ status: 500 });
      const app = start(three());
      const res = await post(app, chat('gpt-4o'), { 'x-llmux-fallbacks': 'other, backup' });
      expect(res.headers['x-llmux-model']).toBe('gpt-4.1-mini');
    });

    it('"none" turns fallbacks off for the request', async () => {
      primary.setBehaviour({ status: 500 });
      const app = start(three());
      const res = await post(app, chat('gpt-4o'), { 'x-llmux-fallbacks': 'none' });
      expect(res.status).toBe(502);
      expect(secondary.requests).toHaveLength(0);
    });

    it('refuses a group outside the configured fallbacks (400), so no key reaches a model it was not admitted for', async () => {
      const app = start(three());
      const res = await post(app, chat('gpt-4o'), { 'x-llmux-fallbacks': 'gpt-4o-secret' });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'x-llmux-fallbacks' });
      expect(primary.requests).toHaveLength(0);
    });

    it('is ignored unless the router allows it', async () => {
      primary.setBehaviour({ status: 500 });
      const app = start({ ...three(), clientFallbacks: false });
      const res = await post(app, chat('gpt-4o'), { 'x-llmux-fallbacks': 'none' });
      expect(res.headers['x-llmux-model']).toBe('gpt-4o-mini');
    });
  });
});
