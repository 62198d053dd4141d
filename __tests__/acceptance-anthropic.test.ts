// Acceptance, from a user's side: Anthropic's Messages API through the example gateway with the
// official `@anthropic-ai/sdk` as installed (base URL the gateway's origin; this SDK sends its key
// as `Authorization: Bearer`). Messages JSON and streamed, free token counts, bills exact with
// cache reads and writes, and every refusal typed by the SDK from Anthropic's error shape.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import {
  catalogPrice,
  handPricedUsd,
  startGateway,
  startPreset,
  type Running,
} from './support/acceptance.js';

const PROMPT = 'Write one short greeting for the people reading this test';
const ask = { max_tokens: 64, messages: [{ role: 'user' as const, content: PROMPT }] };

/** A client of `origin` with `key`, counting the HTTP requests it makes. */
function clientOf(origin: string, key: string, maxRetries = 0): { client: Anthropic; sent: () => number } {
  let sent = 0;
  const client = new Anthropic({
    baseURL: origin,
    apiKey: key,
    maxRetries,
    fetch: (input: string | URL | Request, init?: RequestInit) => {
      sent++;
      return fetch(input, init);
    },
  });
  return { client, sent: () => sent };
}

type AnthropicApiError = InstanceType<typeof Anthropic.APIError>;

describe('the Messages API through the example gateway', () => {
  let gw: Running;
  let key: { id: string; key: string };
  let client: Anthropic;

  beforeAll(async () => {
    gw = await startGateway();
    key = await gw.createKey({ name: 'anthropic-user', budgetUsd: 50, models: ['claude-*'] });
    client = clientOf(gw.origin, key.key).client;
  });
  afterEach(() => {
    gw.mock.reset();
  });
  afterAll(async () => {
    await gw.close();
  });

  async function settledSpend(): Promise<number> {
    await gw.settled();
    return gw.spendOf(key.id);
  }

  it('answers messages.create with the key as Authorization: Bearer, as this SDK sends it', async () => {
    const message = await client.messages.create({ model: 'claude-haiku-4-5', ...ask });
    expect(message.content).toEqual([{ type: 'text', text: 'tok0 tok1 tok2 ' }]);
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage).toMatchObject({ input_tokens: 10, output_tokens: 3 });
    const upstream = gw.mock.requests.at(-1)!;
    expect(upstream.path).toBe('/v1/messages');
    // The relay's own key goes upstream, never the client's.
    expect(upstream.headers['x-api-key']).toMatch(/^sk-mock-upstream-/);
    expect(upstream.headers.authorization).toBeUndefined();
  });

  it('takes the key as x-api-key too', async () => {
    const sentHeaders: Headers[] = [];
    const withHeader = new Anthropic({
      baseURL: gw.origin,
      apiKey: null,
      defaultHeaders: { 'x-api-key': key.key },
      maxRetries: 0,
      fetch: (input: string | URL | Request, init?: RequestInit) => {
        sentHeaders.push(new Headers(init?.headers));
        return fetch(input, init);
      },
    });
    const message = await withHeader.messages.create({ model: 'claude-haiku-4-5', ...ask });
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'tok0 tok1 tok2 ' });
    expect(sentHeaders).toHaveLength(1);
    expect(sentHeaders[0]!.get('x-api-key')).toBe(key.key);
    expect(sentHeaders[0]!.get('authorization')).toBeNull();
  });

  it('streams through messages.stream, and finalMessage() holds the text and usage', async () => {
    const stream = client.messages.stream({ model: 'claude-haiku-4-5', ...ask });
    const deltas: string[] = [];
    stream.on('text', (text) => deltas.push(text));
    const final = await stream.finalMessage();
    expect(deltas.join('')).toBe('tok0 tok1 tok2 ');
    expect(final.content).toEqual([{ type: 'text', text: 'tok0 tok1 tok2 ' }]);
    expect(final.stop_reason).toBe('end_turn');
    expect(final.usage).toMatchObject({ input_tokens: 10, output_tokens: 3 });
  });

  it('counts tokens for free: the spend does not move', async () => {
    const before = await settledSpend();
    const count = await client.messages.countTokens({ model: 'claude-haiku-4-5', messages: ask.messages });
    expect(count.input_tokens).toBe(10);
    expect(await settledSpend()).toBe(before);
  });

  it.each([
    ['JSON', false],
    ['a stream', true],
  ])(
    'bills %s at the catalog price of input, cache read, cache write and output apart',
    async (_name, stream) => {
      gw.mock.enqueue({ usage: { cachedTokens: 2000, cacheWriteTokens: 500 } });
      const before = await settledSpend();
      const params = { model: 'claude-sonnet-4-5', ...ask };
      const message = stream
        ? await client.messages.stream(params).finalMessage()
        : await client.messages.create(params);
      // Anthropic's input_tokens leaves the cached and the written tokens out.
      expect(message.usage).toMatchObject({
        input_tokens: 10,
        cache_read_input_tokens: 2000,
        cache_creation_input_tokens: 500,
        output_tokens: 3,
      });
      // claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output per million.
      const expected = handPricedUsd('claude-sonnet-4-5', {
        input: 10,
        cached: 2000,
        cacheWrite: 500,
        output: 3,
      });
      expect(expected).toBeCloseTo((10 * 3 + 2000 * 0.3 + 500 * 3.75 + 3 * 15) / 1e6, 15);
      expect((await settledSpend()) - before).toBeCloseTo(expected, 12);
    },
  );

  it('bills one-hour cache writes at their own catalog price', async () => {
    // What Anthropic answers for a prompt cached with ttl "1h": the writes broken down by lifetime.
    gw.mock.enqueue({
      body: {
        id: 'msg_1h',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        content: [{ type: 'text', text: 'hi' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: {
          input_tokens: 10,
          cache_read_input_tokens: 0,
          cache_creation_input_tokens: 1_000,
          cache_creation: { ephemeral_5m_input_tokens: 400, ephemeral_1h_input_tokens: 600 },
          output_tokens: 3,
        },
      },
    });
    const before = await settledSpend();
    await client.messages.create({ model: 'claude-sonnet-4-5', ...ask });
    // claude-sonnet-4-5: $3 input, $3.75 five-minute write, $6 one-hour write, $15 output per million.
    expect(catalogPrice('claude-sonnet-4-5').cacheWrite1hPerMTokUsd).toBe(6);
    const expected = (10 * 3 + 400 * 3.75 + 600 * 6 + 3 * 15) / 1e6;
    expect((await settledSpend()) - before).toBeCloseTo(expected, 12);
  });

  it('answers a bad key with AuthenticationError, in the {"type":"error"} shape', async () => {
    const bad = clientOf(gw.origin, 'sk-llmux-not-a-key').client;
    const err = (await bad.messages
      .create({ model: 'claude-haiku-4-5', ...ask })
      .catch((e) => e)) as AnthropicApiError;
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(err.status).toBe(401);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    expect(typeof (err.error as { error: { message: unknown } }).error.message).toBe('string');
  });

  it('answers a model outside the allow-list with PermissionDeniedError', async () => {
    const err = (await client.messages
      .create({ model: 'gpt-4o-mini', ...ask })
      .catch((e) => e)) as AnthropicApiError;
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(err.status).toBe(403);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    expect(gw.mock.requests).toHaveLength(0);
  });

  it('answers a spent budget with RateLimitError that the SDK does not retry (x-should-retry: false)', async () => {
    const poor = await gw.createKey({ name: 'poor', budgetUsd: 0.000001 });
    const { client: poorClient, sent } = clientOf(gw.origin, poor.key, 2);
    const err = (await poorClient.messages
      .create({ model: 'claude-haiku-4-5', ...ask })
      .catch((e) => e)) as AnthropicApiError;
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.status).toBe(429);
    expect(err.headers?.get('x-should-retry')).toBe('false');
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(sent()).toBe(1);
    expect(gw.mock.requests).toHaveLength(0);
  });
});

describe('overload on the Messages API, as Anthropic answers it (529)', () => {
  let app: Running;
  let key: string;

  beforeAll(async () => {
    app = await startPreset({ gate: { max: 1, maxQueue: 0 } });
    key = (await app.createKey({ name: 'overload', budgetUsd: 50 })).key;
  });
  afterEach(() => {
    app.mock.reset();
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers a full gate with OverloadedError 529, overloaded_error', async () => {
    app.mock.enqueue({ stallAfterChunks: 1 });
    const arrived = new Promise<void>((resolve) => {
      const listener = () => {
        app.mock.off('request', listener);
        resolve();
      };
      app.mock.on('request', listener);
    });
    const holder = new AbortController();
    const { client } = clientOf(app.origin, key);
    const first = client.messages
      .create({ model: 'claude-haiku-4-5', ...ask, stream: true }, { signal: holder.signal })
      .then(async (stream) => {
        for await (const event of stream) void event;
      })
      .catch((e: unknown) => e);
    await arrived;
    const err = (await client.messages
      .create({ model: 'claude-haiku-4-5', ...ask })
      .catch((e) => e)) as AnthropicApiError;
    holder.abort();
    await first;
    expect(err).toBeInstanceOf(Anthropic.OverloadedError);
    expect(err.status).toBe(529);
    expect(err.error).toMatchObject({
      type: 'error',
      error: { type: 'overloaded_error', code: 'queue_full' },
    });
  });

  it('answers an upstream that stays overloaded with OverloadedError 529', async () => {
    app.mock.setBehaviour({ status: 529 });
    const { client } = clientOf(app.origin, key);
    const err = (await client.messages
      .create({ model: 'claude-haiku-4-5', ...ask })
      .catch((e) => e)) as AnthropicApiError;
    expect(err).toBeInstanceOf(Anthropic.OverloadedError);
    expect(err.status).toBe(529);
    expect(err.error).toMatchObject({
      type: 'error',
      error: { type: 'overloaded_error', code: 'upstream_overloaded' },
    });
  });
});
