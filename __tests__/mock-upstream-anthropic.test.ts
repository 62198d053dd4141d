// The mock upstream's Anthropic Messages API driven by the official `@anthropic-ai/sdk` as installed:
// messages JSON and streamed, tool use, token counting, usage with cache tokens, and Anthropic errors.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const weatherTool = {
  name: 'get_weather',
  description: 'Weather in a city',
  input_schema: {
    type: 'object' as const,
    properties: { city: { type: 'string' }, days: { type: 'integer' } },
    required: ['city', 'days'],
  },
};
const messages = [{ role: 'user' as const, content: 'weather in Paris today' }];

let mock: MockUpstream;
let client: Anthropic;

beforeAll(async () => {
  mock = await createMockUpstream();
  client = new Anthropic({ baseURL: mock.url, apiKey: 'sk-ant-test', maxRetries: 0 });
});
afterEach(() => {
  mock.reset();
});
afterAll(async () => {
  await mock.close();
});

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

async function rawPost(path: string, body: unknown): Promise<Response> {
  return fetch(`${mock.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function errorTypeOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: { type: string } }).error.type;
}

async function rawEvents(body: unknown): Promise<{ text: string; events: SseEvent[] }> {
  const text = await (await rawPost('/v1/messages', body)).text();
  const events = text
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      const [eventLine, dataLine] = block.split('\n');
      return {
        event: eventLine!.slice('event: '.length),
        data: JSON.parse(dataLine!.slice('data: '.length)) as Record<string, unknown>,
      };
    });
  return { text, events };
}

describe('POST /v1/messages (JSON)', () => {
  it('answers a message with text, end_turn and usage', async () => {
    const message = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 100, messages });
    expect(message).toEqual({
      id: 'msg_mock_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'tok0 tok1 tok2 ' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: {
        input_tokens: 4,
        output_tokens: 3,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
    });
  });

  it('reports input_tokens without the cache read and cache write tokens, which it reports beside', async () => {
    mock.enqueue(
      { usage: { cachedTokens: 100, cacheWriteTokens: 20 } },
      { usage: { promptTokens: 150, cachedTokens: 100, cacheWriteTokens: 20 } },
    );
    const derived = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages });
    expect(derived.usage).toMatchObject({
      input_tokens: 4,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 20,
    });
    const explicit = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages });
    expect(explicit.usage).toMatchObject({
      input_tokens: 30,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 20,
    });
  });

  it('counts the system prompt and text blocks, and stops at max_tokens', async () => {
    const message = await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 2,
      system: [{ type: 'text', text: 'be brief' }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'one two three' }] }],
    });
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.content).toEqual([{ type: 'text', text: 'tok0 tok1 ' }]);
    expect(message.usage).toMatchObject({ input_tokens: 5, output_tokens: 2 });
  });

  it('answers tools with a tool_use block whose input the schema accepts', async () => {
    const message = await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 100,
      messages,
      tools: [weatherTool],
    });
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content).toEqual([
      { type: 'tool_use', id: 'toolu_mock_1', name: 'get_weather', input: { city: 'mock', days: 1 } },
    ]);
  });

  it('answers text when tool_choice is none, and a named tool when tool_choice names it', async () => {
    const other = { name: 'get_time', input_schema: { type: 'object' as const, properties: {} } };
    const none = await client.messages.create({
      model: 'm',
      max_tokens: 100,
      messages,
      tools: [weatherTool],
      tool_choice: { type: 'none' },
    });
    expect(none.content[0]!.type).toBe('text');
    const named = await client.messages.create({
      model: 'm',
      max_tokens: 100,
      messages,
      tools: [weatherTool, other],
      tool_choice: { type: 'tool', name: 'get_time' },
    });
    expect(named.content[0]).toMatchObject({ type: 'tool_use', name: 'get_time', input: {} });
  });

  it('refuses a request without max_tokens with Anthropic’s 400 invalid_request_error', async () => {
    const res = await rawPost('/v1/messages', { model: 'claude-sonnet-4-5', messages });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: Field required' },
    });
  });

  it('records x-api-key, anthropic-version and anthropic-beta as received', async () => {
    const headers = {
      'content-type': 'application/json',
      'x-api-key': 'sk-ant-raw',
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'prompt-caching-2024-07-31',
    };
    const body = JSON.stringify({ model: 'm', max_tokens: 10, messages });
    await (await fetch(`${mock.url}/v1/messages`, { method: 'POST', headers, body })).text();
    expect(mock.requests[0]!.headers).toMatchObject({
      'x-api-key': 'sk-ant-raw',
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'prompt-caching-2024-07-31',
    });
  });
});

describe('POST /v1/messages (stream)', () => {
  it('sends Anthropic’s event sequence, with no [DONE]', async () => {
    const { text, events } = await rawEvents({ model: 'm', max_tokens: 100, messages, stream: true });
    expect(text).not.toContain('[DONE]');
    expect(events.map((event) => event.event)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    for (const { event, data } of events) expect(data.type).toBe(event);
    expect(events[0]!.data.message).toMatchObject({
      content: [],
      stop_reason: null,
      usage: {
        input_tokens: 4,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: 1,
      },
    });
    expect(events[3]!.data).toEqual({
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'text_delta', text: 'tok0 ' },
    });
    expect(events[7]!.data).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 3 },
    });
  });

  it('streams a message the SDK accumulates, with its usage', async () => {
    mock.enqueue({ chunks: 5, usage: { cachedTokens: 7 } });
    const stream = client.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 100, messages });
    const deltas: string[] = [];
    stream.on('text', (delta) => deltas.push(delta));
    const message = await stream.finalMessage();
    expect(deltas).toEqual(['tok0 ', 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 ']);
    expect(message.content).toEqual([{ type: 'text', text: 'tok0 tok1 tok2 tok3 tok4 ' }]);
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage).toMatchObject({
      input_tokens: 4,
      cache_read_input_tokens: 7,
      cache_creation_input_tokens: 0,
      output_tokens: 5,
    });
  });

  it('streams tool use as input_json_delta fragments the SDK parses', async () => {
    const stream = client.messages.stream({ model: 'm', max_tokens: 100, messages, tools: [weatherTool] });
    const fragments: string[] = [];
    stream.on('inputJson', (fragment) => fragments.push(fragment));
    const message = await stream.finalMessage();
    expect(fragments.join('')).toBe('{"city":"mock","days":1}');
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content).toEqual([
      { type: 'tool_use', id: 'toolu_mock_1', name: 'get_weather', input: { city: 'mock', days: 1 } },
    ]);
  });

  it('sends an overloaded_error event after errorFrameAfterChunks chunks, which the SDK throws', async () => {
    mock.enqueue({ chunks: 5, errorFrameAfterChunks: 2 }, { chunks: 5, errorFrameAfterChunks: 2 });
    const { events } = await rawEvents({ model: 'm', max_tokens: 100, messages, stream: true });
    expect(events.filter((event) => event.event === 'content_block_delta')).toHaveLength(2);
    expect(events.at(-1)).toEqual({
      event: 'error',
      data: { type: 'error', error: { type: 'overloaded_error', message: 'mock stream error' } },
    });
    const error = await client.messages
      .stream({ model: 'm', max_tokens: 100, messages })
      .finalMessage()
      .catch((caught) => caught);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as InstanceType<typeof Anthropic.APIError>).type).toBe('overloaded_error');
  });

  it('omits message_stop with omitDone, and ends with stop_reason max_tokens at the cap', async () => {
    mock.enqueue({ omitDone: true });
    const undone = await rawEvents({ model: 'm', max_tokens: 100, messages, stream: true });
    expect(undone.events.at(-1)!.event).toBe('message_delta');
    const capped = await rawEvents({ model: 'm', max_tokens: 1, messages, stream: true });
    expect(capped.events.at(-2)!.data).toMatchObject({ delta: { stop_reason: 'max_tokens' } });
  });
});

describe('POST /v1/messages/count_tokens', () => {
  it('answers the input tokens of system and messages', async () => {
    const counted = await client.messages.countTokens({
      model: 'claude-sonnet-4-5',
      system: 'be brief',
      messages,
    });
    expect(counted).toEqual({ input_tokens: 6 });
  });
});

describe('Anthropic errors', () => {
  it.each([
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [413, 'request_too_large'],
    [429, 'rate_limit_error'],
    [500, 'api_error'],
    [529, 'overloaded_error'],
  ])('answers status %i on /v1/messages with Anthropic’s %s', async (status, type) => {
    mock.enqueue({ status });
    const res = await rawPost('/v1/messages', { model: 'm', max_tokens: 10, messages });
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual({ type: 'error', error: { type, message: `mock error ${status}` } });
  });

  it('gives the SDK a 529 it types as OverloadedError and a 429 as RateLimitError', async () => {
    mock.enqueue({ status: 529 }, { status: 429, retryAfter: '4' });
    const overloaded = await client.messages.create({ model: 'm', max_tokens: 10, messages }).catch((e) => e);
    expect(overloaded).toBeInstanceOf(Anthropic.APIError);
    expect(overloaded).toBeInstanceOf(Anthropic.OverloadedError);
    expect(overloaded).toMatchObject({ status: 529, type: 'overloaded_error' });
    const limited = await client.messages.create({ model: 'm', max_tokens: 10, messages }).catch((e) => e);
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError);
    expect(limited).toMatchObject({ status: 429, type: 'rate_limit_error' });
    expect((limited as InstanceType<typeof Anthropic.APIError>).headers?.get('retry-after')).toBe('4');
  });

  it('answers invalid JSON, an unknown route and a throwing factory in Anthropic’s shape', async () => {
    const invalid = await rawPost('/v1/messages', '{"model":');
    expect([invalid.status, await errorTypeOf(invalid)]).toEqual([400, 'invalid_request_error']);
    const unknown = await rawPost('/v1/messages/batches', {});
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({
      type: 'error',
      error: { type: 'not_found_error', message: 'Unknown request URL: POST /v1/messages/batches' },
    });
    mock.setBehaviour(() => {
      throw new Error('boom');
    });
    const thrown = await rawPost('/v1/messages', { model: 'm', max_tokens: 10, messages });
    expect([thrown.status, await errorTypeOf(thrown)]).toEqual([500, 'api_error']);
  });

  it('answers a body over maxBodyBytes with request_too_large', async () => {
    const small = await createMockUpstream({ maxBodyBytes: 64 });
    const res = await fetch(`${small.url}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify({ padding: 'x'.repeat(100) }),
    });
    expect(res.status).toBe(413);
    expect(await errorTypeOf(res)).toBe('request_too_large');
    await small.close();
  });

  it('fails a JSON answer with a 500 api_error and a stream with an error event when finishReason is failed', async () => {
    mock.enqueue({ finishReason: 'failed' }, { finishReason: 'failed' });
    const json = await client.messages.create({ model: 'm', max_tokens: 10, messages }).catch((e) => e);
    expect(json).toMatchObject({ status: 500, type: 'api_error' });
    const { events } = await rawEvents({ model: 'm', max_tokens: 10, messages, stream: true });
    expect(events.at(-1)!.event).toBe('error');
  });
});
