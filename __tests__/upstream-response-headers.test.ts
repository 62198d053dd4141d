// Upstream response headers passed to the client by an allow-list, through streamRelay and the
// preset, on JSON, SSE and relayed error answers: the upstream's request id (as the answer's
// x-request-id, or as x-upstream-request-id beside the client's own), its rate-limit state and
// processing time; nothing off the list; and x-llmux-model naming the model that served.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay, type StreamRelayOptions } from '../lib/middleware/stream-relay.js';
import { llmux } from '../lib/preset.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';
import { DEFAULT_RESPONSE_HEADERS, MODEL_HEADER } from '../lib/upstream/answer-headers.js';
import { UpstreamPool } from '../lib/upstream/pool.js';
import { chat, sseEvents } from './support/http.js';

const UPSTREAM_ID = 'req_9f2c1b7e04d34a8f';
const ANTHROPIC_ID = 'req_011CTanthropic0001';
const CLIENT_ID = 'client-req.42';
/** The relay's own ids: UUIDs. */
const RELAY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What an OpenAI answer carries, passed or not. */
const OPENAI_HEADERS = {
  'x-request-id': UPSTREAM_ID,
  'openai-processing-ms': '42',
  'openai-organization': 'org-secret-tenant',
  'x-ratelimit-limit-requests': '500',
  'x-ratelimit-remaining-requests': '499',
  'x-ratelimit-reset-requests': '120ms',
  'x-ratelimit-limit-tokens': '30000',
  'x-ratelimit-remaining-tokens': '29990',
  'x-ratelimit-reset-tokens': '20ms',
  'x-internal-secret': 'hunter2',
  'set-cookie': '__cf_bm=upstream-session; HttpOnly',
};

/** What an Anthropic answer carries, passed or not. */
const ANTHROPIC_HEADERS = {
  'request-id': ANTHROPIC_ID,
  'anthropic-organization-id': 'org-secret-tenant',
  'anthropic-ratelimit-requests-limit': '50',
  'anthropic-ratelimit-requests-remaining': '49',
  'anthropic-ratelimit-requests-reset': '2026-12-04T12:00:01Z',
  'anthropic-ratelimit-input-tokens-limit': '40000',
  'anthropic-ratelimit-input-tokens-remaining': '39990',
  'anthropic-ratelimit-input-tokens-reset': '2026-12-04T12:00:01Z',
  'x-internal-secret': 'hunter2',
  'set-cookie': '__cf_bm=upstream-session; HttpOnly',
};

const anthropicMessage = (extra: Record<string, unknown> = {}) => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 10,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

type Headers = Record<string, string | string[] | undefined>;

/** The headers of `headers` that came from the upstream's lists above, by name. */
function upstreamOnes(headers: Headers): Headers {
  const names = new Set([...Object.keys(OPENAI_HEADERS), ...Object.keys(ANTHROPIC_HEADERS)]);
  return Object.fromEntries(Object.entries(headers).filter(([name]) => names.has(name)));
}

/** One way to mount the relay: `options` are the relay's. */
type Mount = (upstream: string, options?: Omit<StreamRelayOptions, 'upstream'>) => Mounted;
interface Mounted {
  app: express.Express;
  close(): Promise<void>;
}

const MOUNTS: [string, Mount][] = [
  [
    'streamRelay',
    (upstream, options) => {
      const relay = streamRelay({ upstream, ...options });
      const app = express();
      app.post('/v1/chat/completions', bodyLimit(), relay);
      app.post('/v1/messages', bodyLimit(), relay);
      return { app, close: () => relay.close() };
    },
  ],
  [
    'the preset',
    (upstream, options) => {
      const router = llmux({ upstream, auth: false, relay: options });
      return { app: express().use(router), close: () => router.close() };
    },
  ],
];

let mock: MockUpstream;
beforeAll(async () => {
  mock = await createMockUpstream();
});
afterAll(async () => {
  await mock.close();
});
beforeEach(() => {
  mock.reset();
  mock.setBehaviour((r): MockBehaviour => ({
    headers: r.path.startsWith('/v1/messages') ? ANTHROPIC_HEADERS : OPENAI_HEADERS,
  }));
});

describe.each(MOUNTS)('upstream response headers through %s', (_name, mount) => {
  let mounted: Mounted | undefined;
  afterAll(async () => {
    await mounted?.close();
  });
  /** Mounts afresh (closing the last one) with these relay options. */
  async function app(options?: Omit<StreamRelayOptions, 'upstream'>): Promise<express.Express> {
    await mounted?.close();
    mounted = mount(`${mock.url}/v1`, options);
    return mounted.app;
  }
  const post = async (path: string, body: object, clientId?: string, options?: object) => {
    const req = request(await app(options)).post(path);
    if (clientId !== undefined) req.set('x-request-id', clientId);
    const res = await req.send(body);
    expect(res.status).toBe(200);
    return res;
  };

  describe.each([
    ['JSON', false],
    ['SSE', true],
  ])('on a %s answer', (_kind, stream) => {
    const openai = (clientId?: string, options?: object) =>
      post('/v1/chat/completions', chat(stream ? { stream: true } : {}), clientId, options);

    it("gives the upstream's x-request-id as the answer's when the client sent none", async () => {
      const res = await openai();
      expect(res.headers['x-request-id']).toBe(UPSTREAM_ID);
      expect(res.headers['x-upstream-request-id']).toBeUndefined();
      if (stream) expect(sseEvents(res.text).at(-1)?.data).toBe('[DONE]');
    });

    it("keeps the client's x-request-id and adds the upstream's as x-upstream-request-id", async () => {
      const res = await openai(CLIENT_ID);
      expect(res.headers['x-request-id']).toBe(CLIENT_ID);
      expect(res.headers['x-upstream-request-id']).toBe(UPSTREAM_ID);
      // The upstream heard the client's id.
      expect(mock.requests[0]!.headers['x-request-id']).toBe(CLIENT_ID);
    });

    it('passes the rate-limit state and processing time, nothing off the list', async () => {
      const res = await openai();
      expect(upstreamOnes(res.headers)).toEqual({
        'x-request-id': UPSTREAM_ID,
        'openai-processing-ms': '42',
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '29990',
        'x-ratelimit-reset-tokens': '20ms',
      });
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.headers['x-internal-secret']).toBeUndefined();
    });

    it("passes Anthropic's request-id and anthropic-ratelimit-*, nothing off the list", async () => {
      const res = await post('/v1/messages', anthropicMessage(stream ? { stream: true } : {}));
      // No upstream x-request-id: the answer keeps the relay's own.
      expect(upstreamOnes(res.headers)).toEqual({
        'x-request-id': expect.stringMatching(RELAY_ID),
        'request-id': ANTHROPIC_ID,
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '49',
        'anthropic-ratelimit-requests-reset': '2026-12-04T12:00:01Z',
        'anthropic-ratelimit-input-tokens-limit': '40000',
        'anthropic-ratelimit-input-tokens-remaining': '39990',
        'anthropic-ratelimit-input-tokens-reset': '2026-12-04T12:00:01Z',
      });
      expect(res.headers[MODEL_HEADER]).toBe('claude-sonnet-4-5');
    });

    it('names the model that served in x-llmux-model', async () => {
      const res = await openai();
      expect(res.headers[MODEL_HEADER]).toBe('gpt-4o-mini');
    });

    it('passes none with forwardResponseHeaders: [], and keeps x-llmux-model', async () => {
      const res = await openai(undefined, { forwardResponseHeaders: [] });
      expect(upstreamOnes(res.headers)).toEqual({ 'x-request-id': expect.stringMatching(RELAY_ID) });
      expect(res.headers[MODEL_HEADER]).toBe('gpt-4o-mini');
    });

    it('passes exactly a custom list, prefixes and any case included', async () => {
      const res = await openai(CLIENT_ID, {
        forwardResponseHeaders: ['X-Internal-*', 'OpenAI-Processing-Ms'],
      });
      expect(upstreamOnes(res.headers)).toEqual({
        'x-request-id': CLIENT_ID,
        'x-internal-secret': 'hunter2',
        'openai-processing-ms': '42',
      });
      expect(res.headers['x-upstream-request-id']).toBeUndefined();
    });
  });

  describe('on an error answer relayed from the upstream', () => {
    const MODEL_ACCESS_403: MockBehaviour = {
      status: 403,
      body: {
        error: {
          message: 'Project `proj_abc123` does not have access to model `gpt-4o-mini`',
          type: 'invalid_request_error',
          code: 'model_not_found',
          param: null,
        },
      },
      headers: OPENAI_HEADERS,
    };
    const BAD_REQUEST_400: MockBehaviour = {
      status: 400,
      body: {
        error: {
          message: "Invalid value for 'temperature'",
          type: 'invalid_request_error',
          code: 'invalid_value',
          param: 'temperature',
        },
      },
      headers: OPENAI_HEADERS,
    };

    it.each([
      ['a 400', BAD_REQUEST_400, 400],
      ['a 403 for a model the project cannot use', MODEL_ACCESS_403, 403],
    ])("carries the upstream's x-request-id and limits on %s", async (_name, behaviour, status) => {
      mock.enqueue(behaviour, behaviour);
      const target = await app();
      const bare = await request(target).post('/v1/chat/completions').send(chat());
      expect(bare.status).toBe(status);
      expect(bare.body.error.message).toBe((behaviour.body as { error: { message: string } }).error.message);
      expect(bare.headers['x-request-id']).toBe(UPSTREAM_ID);
      expect(bare.headers['x-ratelimit-remaining-requests']).toBe('499');
      expect(bare.headers['openai-processing-ms']).toBe('42');
      expect(bare.headers['set-cookie']).toBeUndefined();
      expect(bare.headers['x-internal-secret']).toBeUndefined();

      const own = await request(target)
        .post('/v1/chat/completions')
        .set('x-request-id', CLIENT_ID)
        .send(chat());
      expect(own.status).toBe(status);
      expect(own.headers['x-request-id']).toBe(CLIENT_ID);
      expect(own.headers['x-upstream-request-id']).toBe(UPSTREAM_ID);
    });

    it("carries the upstream's limits beside the relay's own Retry-After on a 429", async () => {
      mock.enqueue({
        status: 429,
        body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } },
        headers: { ...OPENAI_HEADERS, 'x-ratelimit-remaining-requests': '0' },
        retryAfter: '3',
      });
      const res = await request(await app())
        .post('/v1/chat/completions')
        .send(chat());
      expect(res.status).toBe(429);
      expect(res.headers['retry-after']).toBe('3');
      expect(res.headers['x-request-id']).toBe(UPSTREAM_ID);
      expect(res.headers['x-ratelimit-remaining-requests']).toBe('0');
    });

    it("carries Anthropic's request-id on an Anthropic error", async () => {
      mock.enqueue({
        status: 400,
        body: { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: required' } },
        headers: ANTHROPIC_HEADERS,
      });
      const res = await request(await app())
        .post('/v1/messages')
        .send(anthropicMessage());
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
      expect(res.headers['request-id']).toBe(ANTHROPIC_ID);
      expect(res.headers['anthropic-ratelimit-requests-remaining']).toBe('49');
      expect(res.headers['set-cookie']).toBeUndefined();
    });

    it('passes none on an error with forwardResponseHeaders: []', async () => {
      mock.enqueue(BAD_REQUEST_400);
      const res = await request(await app({ forwardResponseHeaders: [] }))
        .post('/v1/chat/completions')
        .send(chat());
      expect(res.status).toBe(400);
      expect(upstreamOnes(res.headers)).toEqual({ 'x-request-id': expect.stringMatching(RELAY_ID) });
    });
  });
});

describe('forwardResponseHeaders option', () => {
  it('defaults to the request ids, the processing time and both families of rate-limit headers', () => {
    expect(DEFAULT_RESPONSE_HEADERS).toEqual([
      'x-request-id',
      'request-id',
      'openai-processing-ms',
      'x-ratelimit-*',
      'anthropic-ratelimit-*',
    ]);
  });

  it.each<[string, unknown]>([
    ['a header the relay writes itself', ['content-type']],
    ['another the relay writes itself, in capitals', ['Content-Length']],
    ['a cookie', ['set-cookie']],
    ['a hop-by-hop header', ['transfer-encoding']],
    ["the relay's own Retry-After", ['retry-after']],
    ['a * inside a name', ['a*b']],
    ['a name with a space', ['x request id']],
    ['an empty name', ['']],
    ['a number', [42]],
    ['a string instead of an array', 'x-request-id'],
    ['null', null],
  ])('refuses %s with a TypeError naming the option', (_name, value) => {
    const options = { upstream: 'http://127.0.0.1:9/v1', forwardResponseHeaders: value as string[] };
    expect(() => streamRelay(options)).toThrow(TypeError);
    expect(() => streamRelay(options)).toThrow(/streamRelay: forwardResponseHeaders/);
    expect(() => llmux({ upstream: options.upstream, auth: false, relay: options })).toThrow(
      /forwardResponseHeaders/,
    );
  });
});

describe('x-llmux-model and the headers the relay writes itself', () => {
  let mounted: Mounted | undefined;
  afterAll(async () => {
    await mounted?.close();
  });

  it('names the model an endpoint is asked for instead of the client’s', async () => {
    const pool = new UpstreamPool({ upstreams: [{ url: `${mock.url}/v1`, model: 'gpt-4o-2024-08-06' }] });
    const relay = streamRelay({ upstream: pool });
    try {
      const app = express().post('/v1/chat/completions', bodyLimit(), relay);
      for (const stream of [false, true]) {
        const res = await request(app)
          .post('/v1/chat/completions')
          .send(chat({ model: 'gpt-4o', stream }));
        expect(res.status).toBe(200);
        expect(res.headers[MODEL_HEADER]).toBe('gpt-4o-2024-08-06');
      }
      expect(mock.requests.map((r) => (r.body as { model: string }).model)).toEqual([
        'gpt-4o-2024-08-06',
        'gpt-4o-2024-08-06',
      ]);
    } finally {
      await relay.close();
    }
  });

  it('never lets an upstream header, even one a broad prefix allows, replace x-llmux-model', async () => {
    // An upstream that is itself a relay answers with headers of the same names.
    mock.setBehaviour({ headers: { ...OPENAI_HEADERS, [MODEL_HEADER]: 'inner-model' } });
    await mounted?.close();
    mounted = MOUNTS[0]![1](`${mock.url}/v1`, { forwardResponseHeaders: ['x-*'] });
    for (const stream of [false, true]) {
      const res = await request(mounted.app).post('/v1/chat/completions').send(chat({ stream }));
      expect(res.status).toBe(200);
      expect(res.headers[MODEL_HEADER]).toBe('gpt-4o-mini');
      expect(res.headers['x-internal-secret']).toBe('hunter2');
    }
  });
});
