// The mock upstream driven by the Vercel AI SDK as installed: `createOpenAI(...)(model)` speaks the
// Responses API and `createAnthropic(...)(model)` the Messages API; text, usage and tool calls must
// come out as the SDK's own schemas read them from the real providers.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, streamText, tool, type LanguageModel } from 'ai';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

let mock: MockUpstream;
let openai: ReturnType<typeof createOpenAI>;
let anthropic: ReturnType<typeof createAnthropic>;

beforeAll(async () => {
  mock = await createMockUpstream();
  openai = createOpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'sk-test' });
  anthropic = createAnthropic({ baseURL: `${mock.url}/v1`, apiKey: 'sk-ant-test' });
});
afterEach(() => {
  mock.reset();
});
afterAll(async () => {
  await mock.close();
});

const weather = tool({
  description: 'Weather in a city',
  inputSchema: jsonSchema<{ city: string; days: number }>({
    type: 'object',
    properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 } },
    required: ['city', 'days'],
    additionalProperties: false,
  }),
});

const providers: [name: string, model: () => LanguageModel, path: string][] = [
  ['openai (Responses)', () => openai('gpt-5'), '/v1/responses'],
  ['anthropic (Messages)', () => anthropic('claude-sonnet-4-5'), '/v1/messages'],
];

describe.each(providers)('the AI SDK with %s', (_name, model, path) => {
  it('generates text with usage', async () => {
    const result = await generateText({ model: model(), prompt: 'hello there world', maxRetries: 0 });
    expect(mock.requests[0]!.path).toBe(path);
    expect(result.text).toBe('tok0 tok1 tok2 ');
    expect(result.finishReason).toBe('stop');
    expect(result.usage).toMatchObject({ inputTokens: 3, outputTokens: 3, totalTokens: 6 });
  });

  it('streams text with usage', async () => {
    mock.enqueue({ chunks: 4 });
    const result = streamText({ model: model(), prompt: 'hello there world', maxRetries: 0 });
    const deltas: string[] = [];
    for await (const delta of result.textStream) deltas.push(delta);
    expect(deltas.join('')).toBe('tok0 tok1 tok2 tok3 ');
    expect(await result.finishReason).toBe('stop');
    expect(await result.usage).toMatchObject({ inputTokens: 3, outputTokens: 4, totalTokens: 7 });
  });

  it('reads the same cached and cache-write tokens from either wire format', async () => {
    const usage = { cachedTokens: 40, cacheWriteTokens: 8 };
    mock.enqueue({ usage }, { usage });
    const generated = await generateText({ model: model(), prompt: 'hello there world', maxRetries: 0 });
    const streamed = streamText({ model: model(), prompt: 'hello there world', maxRetries: 0 });
    await streamed.consumeStream();
    for (const result of [generated.usage, await streamed.usage]) {
      expect(result).toMatchObject({
        inputTokens: 3 + 40 + 8,
        inputTokenDetails: { noCacheTokens: 3, cacheReadTokens: 40, cacheWriteTokens: 8 },
        outputTokens: 3,
      });
    }
  });

  it('calls a tool with arguments its schema accepts, JSON and streamed', async () => {
    const generated = await generateText({
      model: model(),
      prompt: 'weather in Paris?',
      tools: { weather },
      maxRetries: 0,
    });
    expect(generated.finishReason).toBe('tool-calls');
    expect(generated.toolCalls).toEqual([
      expect.objectContaining({ toolName: 'weather', input: { city: 'mock', days: 1 } }),
    ]);
    const streamed = streamText({ model: model(), prompt: 'weather?', tools: { weather }, maxRetries: 0 });
    await streamed.consumeStream();
    expect(await streamed.finishReason).toBe('tool-calls');
    expect(await streamed.toolCalls).toEqual([
      expect.objectContaining({ toolName: 'weather', input: { city: 'mock', days: 1 } }),
    ]);
  });

  it('reports finishReason length when the request’s cap cuts the answer', async () => {
    const result = await generateText({ model: model(), prompt: 'hi', maxOutputTokens: 2, maxRetries: 0 });
    expect(result.text).toBe('tok0 tok1 ');
    expect(result.finishReason).toBe('length');
  });
});

describe('the AI SDK with openai (Responses) and reasoning tokens', () => {
  it('reads reasoning tokens inside the output tokens', async () => {
    mock.enqueue({ usage: { reasoningTokens: 12 } });
    const result = await generateText({ model: openai('o3'), prompt: 'think', maxRetries: 0 });
    expect(result.usage).toMatchObject({
      outputTokens: 15,
      outputTokenDetails: { textTokens: 3, reasoningTokens: 12 },
    });
  });
});
