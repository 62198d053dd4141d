// The mock upstream's OpenAI Responses API driven by the official `openai` client as installed: the
// response object, the typed event stream, the stored-response routes and the SSE fault fields.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const weatherTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Weather in a city',
  strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

let mock: MockUpstream;
let client: OpenAI;

beforeAll(async () => {
  mock = await createMockUpstream();
  client = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});
afterEach(() => {
  mock.reset();
});
afterAll(async () => {
  await mock.close();
});

interface SseEvent {
  event: string | undefined;
  data: Record<string, unknown>;
}

/** POSTs to the mock and splits the SSE body into events (an `event:` line and one `data:` line each). */
async function rawEvents(path: string, body: unknown): Promise<{ text: string; events: SseEvent[] }> {
  const res = await fetch(`${mock.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const events = text
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((line) => line.startsWith('event: '))?.slice('event: '.length);
      const data = lines.find((line) => line.startsWith('data: '))!.slice('data: '.length);
      return { event, data: JSON.parse(data) as Record<string, unknown> };
    });
  return { text, events };
}

describe('POST /v1/responses (JSON)', () => {
  it('answers a completed response whose text the SDK reads as output_text', async () => {
    const response = await client.responses.create({ model: 'gpt-5', input: 'hello there world' });
    expect(response).toMatchObject({
      id: 'resp_mock_1',
      object: 'response',
      status: 'completed',
      model: 'gpt-5',
      error: null,
      incomplete_details: null,
      output: [
        {
          type: 'message',
          id: 'msg_mock_1',
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'tok0 tok1 tok2 ', annotations: [] }],
        },
      ],
      usage: {
        input_tokens: 3,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 3,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 6,
      },
    });
    expect(response.output_text).toBe('tok0 tok1 tok2 ');
    expect(response.created_at).toEqual(expect.any(Number));
  });

  it('counts words of instructions and every input item, and reports cached and reasoning tokens', async () => {
    mock.enqueue({ usage: { cachedTokens: 10, reasoningTokens: 4 } });
    const response = await client.responses.create({
      model: 'o3',
      instructions: 'be brief',
      input: [
        { role: 'user', content: 'one two' },
        { role: 'user', content: [{ type: 'input_text', text: 'three' }] },
        { type: 'function_call_output', call_id: 'call_1', output: 'four five' },
      ],
    });
    expect(response.usage).toEqual({
      input_tokens: 7 + 10,
      input_tokens_details: { cached_tokens: 10 },
      output_tokens: 3 + 4,
      output_tokens_details: { reasoning_tokens: 4 },
      total_tokens: 24,
    });
  });

  it('answers function tools with a function_call item', async () => {
    const response = await client.responses.create({
      model: 'gpt-5',
      input: 'weather?',
      tools: [weatherTool],
    });
    expect(response.output).toEqual([
      {
        type: 'function_call',
        id: 'fc_mock_1',
        call_id: 'call_mock_1',
        name: 'get_weather',
        arguments: '{"city":"mock"}',
        status: 'completed',
      },
    ]);
    expect(response.output_text).toBe('');
  });

  it('stops at max_output_tokens with status incomplete', async () => {
    const response = await client.responses.create({ model: 'gpt-5', input: 'hi', max_output_tokens: 2 });
    expect(response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      max_output_tokens: 2,
      output_text: 'tok0 tok1 ',
      usage: { output_tokens: 2 },
    });
  });

  it('answers status failed with an error when finishReason is failed', async () => {
    mock.enqueue({ finishReason: 'failed' });
    const response = await client.responses.create({ model: 'gpt-5', input: 'hi' });
    expect(response.status).toBe('failed');
    expect(response.error).toEqual({ code: 'server_error', message: 'mock response failed' });
  });

  it('answers a scripted error status in OpenAI’s shape, typed by the SDK', async () => {
    mock.enqueue({ status: 429, retryAfter: '3' });
    const error = await client.responses.create({ model: 'gpt-5', input: 'hi' }).catch((caught) => caught);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error' });
  });
});

describe('POST /v1/responses (stream)', () => {
  it('sends typed events with sequence numbers, ending in response.completed and no [DONE]', async () => {
    const { text, events } = await rawEvents('/v1/responses', { model: 'gpt-5', input: 'hi', stream: true });
    expect(text).not.toContain('[DONE]');
    expect(events.map((event) => event.event)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    events.forEach(({ event, data }, index) => {
      expect(data.type).toBe(event);
      expect(data.sequence_number).toBe(index);
    });
    expect(events[0]!.data.response).toMatchObject({ status: 'in_progress', output: [], usage: null });
    expect(events.filter((event) => event.event === 'response.output_text.delta').map((e) => e.data)).toEqual(
      [0, 1, 2].map((i) =>
        expect.objectContaining({ item_id: 'msg_mock_1', output_index: 0, delta: `tok${i} ` }),
      ),
    );
    expect(events.at(-1)!.data.response).toMatchObject({
      status: 'completed',
      usage: { input_tokens: 1, output_tokens: 3, total_tokens: 4 },
    });
  });

  it('streams events the SDK iterates and accumulates into the final response', async () => {
    mock.enqueue({ chunks: 4, usage: { reasoningTokens: 2 } });
    const types: string[] = [];
    const stream = client.responses.stream({ model: 'gpt-5', input: 'hi' });
    stream.on('event', (event) => types.push(event.type));
    const response = await stream.finalResponse();
    expect(response.output_text).toBe('tok0 tok1 tok2 tok3 ');
    expect(response.usage).toMatchObject({
      output_tokens: 6,
      output_tokens_details: { reasoning_tokens: 2 },
    });
    expect(types.at(-1)).toBe('response.completed');
  });

  it('streams a function call: the item, argument deltas, arguments done, then the item done', async () => {
    const stream = await client.responses.create({
      model: 'gpt-5',
      input: 'weather?',
      tools: [weatherTool],
      stream: true,
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const added = events[2] as OpenAI.Responses.ResponseOutputItemAddedEvent;
    expect(added.item).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: '' });
    const deltas = events
      .filter((event) => event.type === 'response.function_call_arguments.delta')
      .map((event) => (event as OpenAI.Responses.ResponseFunctionCallArgumentsDeltaEvent).delta);
    expect(JSON.parse(deltas.join(''))).toEqual({ city: 'mock' });
  });

  it('ends with response.incomplete at max_output_tokens and response.failed when asked', async () => {
    const capped = await rawEvents('/v1/responses', { input: 'hi', stream: true, max_output_tokens: 1 });
    expect(capped.events.at(-1)!.event).toBe('response.incomplete');
    expect(capped.events.at(-1)!.data.response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
    });
    mock.enqueue({ finishReason: 'failed' });
    const failed = await rawEvents('/v1/responses', { input: 'hi', stream: true });
    expect(failed.events.at(-1)!.event).toBe('response.failed');
    expect(failed.events.at(-1)!.data.response).toMatchObject({
      status: 'failed',
      error: { code: 'server_error' },
    });
  });

  it('sends the Responses error event after errorFrameAfterChunks chunks and ends there', async () => {
    mock.enqueue({ chunks: 5, errorFrameAfterChunks: 2 });
    const { events } = await rawEvents('/v1/responses', { input: 'hi', stream: true });
    expect(events.filter((event) => event.event === 'response.output_text.delta')).toHaveLength(2);
    expect(events.at(-1)).toEqual({
      event: 'error',
      data: {
        type: 'error',
        sequence_number: events.length - 1,
        code: 'mock_stream_error',
        message: 'mock stream error',
        param: null,
      },
    });
  });

  it('omits the terminal event with omitDone and every usage with omitUsage', async () => {
    mock.enqueue({ omitDone: true }, { omitUsage: true });
    const undone = await rawEvents('/v1/responses', { input: 'hi', stream: true });
    expect(undone.events.at(-1)!.event).toBe('response.output_item.done');
    const unused = await rawEvents('/v1/responses', { input: 'hi', stream: true });
    expect(unused.events.at(-1)!.event).toBe('response.completed');
    expect(unused.text).not.toContain('usage');
  });

  it('cuts the socket after resetAfterChunks deltas', async () => {
    mock.enqueue({ chunks: 5, resetAfterChunks: 1 });
    const stream = await client.responses.create({ model: 'gpt-5', input: 'hi', stream: true });
    const types: string[] = [];
    const failure = await (async () => {
      for await (const event of stream) types.push(event.type);
    })().catch((error: unknown) => error);
    expect(String(failure)).toMatch(/terminated|socket|ECONNRESET/i); // fetch's TypeError, from another realm
    expect(types.filter((type) => type === 'response.output_text.delta')).toHaveLength(1);
    const [record] = await mock.waitForSettled(1);
    expect(record).toMatchObject({ completed: false, aborted: false });
  });
});

describe('stored responses', () => {
  it('retrieves, cancels and deletes a created response; an unknown id is a 404', async () => {
    const created = await client.responses.create({ model: 'gpt-5', input: 'hi' });
    const retrieved = await client.responses.retrieve(created.id);
    expect(retrieved).toMatchObject({ id: created.id, status: 'completed', output_text: 'tok0 tok1 tok2 ' });
    const cancelled = await client.responses.cancel(created.id);
    expect(cancelled).toMatchObject({ id: created.id, status: 'cancelled' });
    expect((await client.responses.retrieve(created.id)).status).toBe('cancelled');
    const deleted = await fetch(`${mock.url}/v1/responses/${created.id}`, { method: 'DELETE' });
    expect(await deleted.json()).toEqual({ id: created.id, object: 'response', deleted: true });
    const missing = await client.responses.retrieve(created.id).catch((error) => error);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.delete('resp_unknown')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.cancel('resp_unknown')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('deletes through the SDK', async () => {
    const created = await client.responses.create({ model: 'gpt-5', input: 'hi' });
    await client.responses.delete(created.id);
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('keeps a streamed response for retrieval once it completed', async () => {
    const stream = client.responses.stream({ model: 'gpt-5', input: 'hi' });
    const final = await stream.finalResponse();
    const retrieved = await client.responses.retrieve(final.id);
    expect(retrieved).toMatchObject({
      status: 'completed',
      output_text: 'tok0 tok1 tok2 ',
      usage: final.usage,
    });
  });

  it('lists the input items newest first, or oldest first with order=asc', async () => {
    const created = await client.responses.create({
      model: 'gpt-5',
      input: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
      ],
    });
    const items: unknown[] = [];
    for await (const item of client.responses.inputItems.list(created.id)) items.push(item);
    expect(items).toEqual([
      {
        id: 'msg_mock_1_in_1',
        type: 'message',
        role: 'user',
        status: 'completed',
        content: [{ type: 'input_text', text: 'hi' }],
      },
      {
        id: 'msg_mock_1_in_0',
        type: 'message',
        role: 'developer',
        status: 'completed',
        content: [{ type: 'input_text', text: 'be brief' }],
      },
    ]);
    const ascending = await client.responses.inputItems.list(created.id, { order: 'asc', limit: 1 });
    expect(ascending.data.map((item) => item.id)).toEqual(['msg_mock_1_in_0']);
    expect(ascending.has_more).toBe(true);
  });

  it('answers background: true as queued, and a retrieve finds it completed', async () => {
    const queued = await client.responses.create({ model: 'gpt-5', input: 'hi', background: true });
    expect(queued).toMatchObject({ status: 'queued', background: true, output: [] });
    expect(await client.responses.retrieve(queued.id)).toMatchObject({
      status: 'completed',
      output_text: 'tok0 tok1 tok2 ',
    });
  });

  it('accepts and echoes previous_response_id, and keeps nothing with store: false', async () => {
    const first = await client.responses.create({ model: 'gpt-5', input: 'hi', store: false });
    const second = await client.responses.create({
      model: 'gpt-5',
      input: 'and?',
      previous_response_id: first.id,
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(mock.requests[1]!.body).toMatchObject({ previous_response_id: first.id });
    await expect(client.responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('keeps only the last maxStoredResponses responses', async () => {
    const small = await createMockUpstream({ maxStoredResponses: 2 });
    const smallClient = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await smallClient.responses.create({ model: 'm', input: 'hi' })).id);
    await expect(smallClient.responses.retrieve(ids[0]!)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await smallClient.responses.retrieve(ids[2]!)).id).toBe(ids[2]);
    await small.close();
    await expect(createMockUpstream({ maxStoredResponses: -1 })).rejects.toThrow(/maxStoredResponses/);
  });

  it('forgets stored responses on reset(), since ids restart with seq', async () => {
    const created = await client.responses.create({ model: 'gpt-5', input: 'hi' });
    mock.reset();
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('answers invalid JSON with 400 invalid_json in OpenAI’s shape', async () => {
    const res = await fetch(`${mock.url}/v1/responses`, { method: 'POST', body: '{"input":' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        message: expect.any(String),
        type: 'invalid_request_error',
        code: 'invalid_json',
        param: null,
      },
    });
  });
});
