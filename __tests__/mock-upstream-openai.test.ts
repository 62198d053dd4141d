// The mock upstream's OpenAI Chat Completions, Embeddings and Models routes driven by the official
// `openai` client as installed: whatever it accepts and decodes is what real OpenAI sends.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        days: { type: 'integer', minimum: 2 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        detailed: { type: 'boolean' },
      },
      required: ['city', 'days', 'unit'],
    },
  },
};
const timeTool = {
  type: 'function' as const,
  function: { name: 'get_time', parameters: { type: 'object', properties: {} } },
};
const messages = [
  { role: 'system' as const, content: 'be brief' },
  { role: 'user' as const, content: 'weather in Paris' },
];

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

describe('chat completions with n', () => {
  it('answers n choices indexed 0..n-1 and counts completion tokens over all of them', async () => {
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, n: 3 });
    expect(completion.choices.map((choice) => [choice.index, choice.message.content])).toEqual([
      [0, 'tok0 tok1 tok2 '],
      [1, 'tok0 tok1 tok2 '],
      [2, 'tok0 tok1 tok2 '],
    ]);
    expect(completion.usage).toEqual({ prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 });
  });

  it('streams every choice with its index, which the SDK assembles into n messages', async () => {
    const stream = client.chat.completions.stream({
      model: 'gpt-4o-mini',
      messages,
      n: 2,
      stream_options: { include_usage: true },
    });
    const indexes = new Set<number>();
    stream.on('chunk', (chunk) => chunk.choices.forEach((choice) => indexes.add(choice.index)));
    const completion = await stream.finalChatCompletion();
    expect([...indexes].sort()).toEqual([0, 1]);
    expect(completion.choices.map((choice) => [choice.message.content, choice.finish_reason])).toEqual([
      ['tok0 tok1 tok2 ', 'stop'],
      ['tok0 tok1 tok2 ', 'stop'],
    ]);
    expect(completion.usage?.completion_tokens).toBe(6);
  });
});

describe('chat completions with tools', () => {
  it('answers with a call of the first tool whose arguments its schema accepts', async () => {
    const completion = await client.chat.completions.create({
      model: 'gpt-4o',
      messages,
      tools: [weatherTool, timeTool],
    });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    expect(choice!.message.content).toBeNull();
    const [call] = choice!.message.tool_calls!;
    expect(call).toMatchObject({ id: 'call_mock_1_0', type: 'function', function: { name: 'get_weather' } });
    const args = JSON.parse((call as { function: { arguments: string } }).function.arguments);
    expect(args).toEqual({ city: 'mock', days: 2, unit: 'celsius' });
  });

  it('streams the call as OpenAI does: id and name first, then argument fragments, then tool_calls', async () => {
    mock.enqueue({ chunks: 4 });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const stream = client.chat.completions.stream({ model: 'gpt-4o', messages, tools: [weatherTool] });
    stream.on('chunk', (chunk) => chunks.push(chunk));
    const completion = await stream.finalChatCompletion();
    const first = chunks[0]!.choices[0]!.delta;
    expect(first.role).toBe('assistant');
    expect(first.tool_calls).toEqual([
      {
        index: 0,
        id: 'call_mock_1_0',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
    ]);
    const fragments = chunks.slice(1, 5).map((chunk) => chunk.choices[0]!.delta.tool_calls![0]!);
    for (const fragment of fragments) {
      expect(fragment).not.toHaveProperty('id');
      expect(fragment.function).not.toHaveProperty('name');
    }
    expect(chunks[5]!.choices[0]).toMatchObject({ delta: {}, finish_reason: 'tool_calls' });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    const call = choice!.message.tool_calls![0] as { function: { name: string; arguments: string } };
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'mock', days: 2, unit: 'celsius' });
  });

  it('derives arguments from nested schemas, formats, lengths, arrays and unions', async () => {
    const properties = {
      when: { type: 'string', format: 'date-time' },
      code: { type: 'string', minLength: 6 },
      place: { type: 'object', properties: { lat: { type: 'number' } }, required: ['lat'] },
      tags: { type: 'array', items: { type: 'string' }, minItems: 1 },
      note: { type: ['null', 'string'] },
      mode: { anyOf: [{ const: 'fast' }, { const: 'slow' }] },
      optional: { type: 'string' },
    };
    const completion = await client.chat.completions.create({
      model: 'gpt-4o',
      messages,
      tools: [
        {
          type: 'function',
          function: {
            name: 'plan',
            parameters: {
              type: 'object',
              properties,
              required: ['when', 'code', 'place', 'tags', 'note', 'mode'],
            },
          },
        },
      ],
    });
    const call = completion.choices[0]!.message.tool_calls![0] as { function: { arguments: string } };
    expect(JSON.parse(call.function.arguments)).toEqual({
      when: '2025-01-01T00:00:00Z',
      code: 'mockkk',
      place: { lat: 1 },
      tags: ['mock'],
      note: 'mock',
      mode: 'fast',
    });
  });

  it('calls the tool that tool_choice names, and none when it says "none"', async () => {
    const named = await client.chat.completions.create({
      model: 'gpt-4o',
      messages,
      tools: [weatherTool, timeTool],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    const call = named.choices[0]!.message.tool_calls![0] as {
      function: { name: string; arguments: string };
    };
    expect([call.function.name, call.function.arguments]).toEqual(['get_time', '{}']);
    const none = await client.chat.completions.create({
      model: 'gpt-4o',
      messages,
      tools: [weatherTool],
      tool_choice: 'none',
    });
    expect(none.choices[0]).toMatchObject({ message: { content: 'tok0 tok1 tok2 ' }, finish_reason: 'stop' });
  });

  it('lets a behaviour force or suppress the call and set its arguments', async () => {
    mock.enqueue({ toolCalls: false }, { toolCalls: true }, { toolArguments: { city: 'Oslo', days: 3 } });
    const suppressed = await client.chat.completions.create({ model: 'm', messages, tools: [weatherTool] });
    expect(suppressed.choices[0]!.message.tool_calls).toBeUndefined();
    const forced = await client.chat.completions.create({ model: 'm', messages });
    const forcedCall = forced.choices[0]!.message.tool_calls![0] as { function: object };
    expect(forcedCall.function).toEqual({ name: 'mock_tool', arguments: '{}' });
    const scripted = await client.chat.completions.create({ model: 'm', messages, tools: [weatherTool] });
    const scriptedCall = scripted.choices[0]!.message.tool_calls![0] as { function: { arguments: string } };
    expect(JSON.parse(scriptedCall.function.arguments)).toEqual({ city: 'Oslo', days: 3 });
  });
});

describe('usage token classes', () => {
  it('reports cached, reasoning and audio tokens in the detail objects, inside the totals', async () => {
    mock.enqueue({
      usage: {
        cachedTokens: 4,
        cacheWriteTokens: 2,
        reasoningTokens: 5,
        audioPromptTokens: 1,
        audioCompletionTokens: 2,
      },
    });
    const completion = await client.chat.completions.create({ model: 'gpt-5', messages });
    expect(completion.usage).toEqual({
      prompt_tokens: 5 + 4 + 2 + 1,
      completion_tokens: 3 + 5 + 2,
      total_tokens: 12 + 10,
      prompt_tokens_details: { cached_tokens: 4, cache_write_tokens: 2, audio_tokens: 1 },
      completion_tokens_details: {
        reasoning_tokens: 5,
        audio_tokens: 2,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    });
  });

  it('takes explicit totals as they are, in JSON and in the streamed usage chunk', async () => {
    const usage = { promptTokens: 1000, completionTokens: 50, cachedTokens: 800, reasoningTokens: 20 };
    mock.enqueue({ usage }, { usage });
    const json = await client.chat.completions.create({ model: 'o3', messages });
    expect(json.usage).toMatchObject({
      prompt_tokens: 1000,
      completion_tokens: 50,
      total_tokens: 1050,
      prompt_tokens_details: { cached_tokens: 800 },
      completion_tokens_details: { reasoning_tokens: 20 },
    });
    const stream = client.chat.completions.stream({
      model: 'o3',
      messages,
      stream_options: { include_usage: true },
    });
    expect((await stream.finalChatCompletion()).usage).toEqual(json.usage);
  });

  it('reports them on legacy text completions too', async () => {
    mock.enqueue({ usage: { cachedTokens: 2 } });
    const completion = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'a b c' });
    expect(completion.usage).toMatchObject({ prompt_tokens: 5, prompt_tokens_details: { cached_tokens: 2 } });
  });

  it('refuses counts that cannot add up, naming the field', () => {
    expect(() => mock.enqueue({ usage: { promptTokens: 3, cachedTokens: 4 } })).toThrow(
      /usage\.promptTokens/,
    );
    expect(() => mock.enqueue({ usage: { completionTokens: 1, reasoningTokens: 2 } })).toThrow(
      /usage\.completionTokens/,
    );
    expect(() => mock.enqueue({ usage: { cachedTokens: -1 } })).toThrow(/usage\.cachedTokens/);
    expect(() => mock.enqueue({ usage: { cached: 1 } as never })).toThrow(/usage\.cached/);
    expect(() => mock.enqueue({ toolArguments: [] as never })).toThrow(/toolArguments/);
    expect(() => mock.enqueue({ finishReason: 'done' as never })).toThrow(/finishReason/);
    expect(mock.pendingBehaviours()).toBe(0);
  });
});

describe('finish reasons', () => {
  it.each<['length' | 'content_filter', string]>([
    ['length', 'length'],
    ['content_filter', 'content_filter'],
  ])('reports finishReason %s as finish_reason %s, JSON and streamed', async (finishReason, wire) => {
    mock.enqueue({ finishReason }, { finishReason });
    const json = await client.chat.completions.create({ model: 'm', messages });
    expect(json.choices[0]!.finish_reason).toBe(wire);
    const streamed = await client.chat.completions.stream({ model: 'm', messages }).finalChatCompletion();
    expect(streamed.choices[0]!.finish_reason).toBe(wire);
  });

  it('fails a JSON answer with a 500 and a stream with its error frame when finishReason is failed', async () => {
    mock.enqueue({ finishReason: 'failed' }, { finishReason: 'failed' });
    const json = await client.chat.completions.create({ model: 'm', messages }).catch((error) => error);
    expect(json).toBeInstanceOf(OpenAI.InternalServerError);
    const streamed = await client.chat.completions
      .stream({ model: 'm', messages })
      .finalChatCompletion()
      .catch((error) => error);
    expect(streamed).toBeInstanceOf(OpenAI.APIError);
    expect((streamed as InstanceType<typeof OpenAI.APIError>).code).toBe('mock_stream_error');
  });
});

describe('embeddings', () => {
  it('answers the SDK default (base64) with little-endian float32 vectors the SDK decodes', async () => {
    const input = ['hello world', 'x'];
    const decoded = await client.embeddings.create({ model: 'text-embedding-3-small', input });
    const floats = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input,
      encoding_format: 'float',
    });
    const [base64Request, floatRequest] = mock.requests;
    expect((base64Request!.body as { encoding_format: string }).encoding_format).toBe('base64');
    expect((floatRequest!.body as { encoding_format: string }).encoding_format).toBe('float');
    expect(decoded.data).toHaveLength(2);
    decoded.data.forEach((item, index) => {
      const expected = floats.data[index]!.embedding;
      expect(item.embedding).toHaveLength(8);
      expect(item.embedding).toEqual(expected.map((value) => Math.fround(value)));
    });
    expect(decoded.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
  });
});

describe('models', () => {
  it('lists the mock models and real ids', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual([
      'mock-model',
      'mock-embedding',
      'gpt-4o-mini',
      'gpt-4o',
      'gpt-5',
      'o3',
      'text-embedding-3-small',
      'claude-sonnet-4-5',
      'claude-haiku-4-5',
    ]);
  });

  it('retrieves one model, and answers an unknown one with OpenAI’s model_not_found 404', async () => {
    expect(await client.models.retrieve('gpt-4o')).toEqual({
      id: 'gpt-4o',
      object: 'model',
      created: expect.any(Number),
      owned_by: 'system',
    });
    const missing = await client.models.retrieve('gpt-nope').catch((error) => error);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
  });

  it('still answers a request for a model it does not list', async () => {
    const completion = await client.chat.completions.create({ model: 'gpt-nope', messages });
    expect(completion.model).toBe('gpt-nope');
  });
});
