// Acceptance, from a user's side: the Vercel AI SDK as installed through the example gateway.
// `createOpenAI(...)(model)` speaks the Responses API and `createAnthropic(...)(model)` the
// Messages API: text arrives whole, the SDK's usage numbers are the upstream's, the key's spend is
// the catalog price of each token class, and a spent budget surfaces as an APICallError 429.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, generateText, streamText, type LanguageModel } from 'ai';
import { handPricedUsd, startGateway, type ClassCounts, type Running } from './support/acceptance.js';

const PROMPT = 'Write one short greeting for the people reading this test';

let gw: Running;
let key: { id: string; key: string };
let poorKey: string;

beforeAll(async () => {
  gw = await startGateway();
  key = await gw.createKey({ name: 'ai-sdk-user', budgetUsd: 50 });
  poorKey = (await gw.createKey({ name: 'ai-sdk-poor', budgetUsd: 0.000001 })).key;
});
afterEach(() => {
  gw.mock.reset();
});
afterAll(async () => {
  await gw.close();
});

interface Provider {
  name: string;
  model: (apiKey: string) => LanguageModel;
  path: string;
  modelId: string;
  /** What the mock reports on top of the prompt's words and the chunks. */
  usage: { cachedTokens: number; cacheWriteTokens?: number; reasoningTokens?: number };
  /** The same, by class, as the bill must price it (the prompt is 10 words, the answer 3 chunks). */
  bill: ClassCounts;
}

const providers: Provider[] = [
  {
    name: 'createOpenAI (Responses API)',
    model: (apiKey) => createOpenAI({ baseURL: gw.v1, apiKey })('o3'),
    path: '/v1/responses',
    modelId: 'o3',
    usage: { cachedTokens: 900, reasoningTokens: 40 },
    bill: { input: 10, cached: 900, output: 43 },
  },
  {
    name: 'createAnthropic (Messages API)',
    model: (apiKey) => createAnthropic({ baseURL: gw.v1, apiKey })('claude-haiku-4-5'),
    path: '/v1/messages',
    modelId: 'claude-haiku-4-5',
    usage: { cachedTokens: 2000, cacheWriteTokens: 500 },
    bill: { input: 10, cached: 2000, cacheWrite: 500, output: 3 },
  },
];

async function settledSpend(): Promise<number> {
  await gw.settled();
  return gw.spendOf(key.id);
}

describe.each(providers)('the AI SDK with $name', (provider) => {
  const inputTokens = provider.bill.input + (provider.bill.cached ?? 0) + (provider.bill.cacheWrite ?? 0);
  const expectedUsage = {
    inputTokens,
    inputTokenDetails: {
      noCacheTokens: provider.bill.input,
      cacheReadTokens: provider.bill.cached,
      // OpenAI has no cache writes: the SDK leaves the count out.
      cacheWriteTokens: provider.bill.cacheWrite,
    },
    outputTokens: provider.bill.output,
    ...(provider.usage.reasoningTokens === undefined
      ? {}
      : { outputTokenDetails: { reasoningTokens: provider.usage.reasoningTokens } }),
    totalTokens: inputTokens + provider.bill.output,
  };

  it('generateText: the whole text, the usage, and a spend at the catalog price of each class', async () => {
    gw.mock.enqueue({ usage: provider.usage });
    const before = await settledSpend();
    const result = await generateText({ model: provider.model(key.key), prompt: PROMPT, maxRetries: 0 });
    expect(gw.mock.requests.at(-1)!.path).toBe(provider.path);
    expect(result.text).toBe('tok0 tok1 tok2 ');
    expect(result.finishReason).toBe('stop');
    expect(result.usage).toMatchObject(expectedUsage);
    expect((await settledSpend()) - before).toBeCloseTo(handPricedUsd(provider.modelId, provider.bill), 12);
  });

  it('streamText: every delta, the usage, and the same spend', async () => {
    gw.mock.enqueue({ usage: provider.usage, chunks: 3 });
    const before = await settledSpend();
    const result = streamText({ model: provider.model(key.key), prompt: PROMPT, maxRetries: 0 });
    const deltas: string[] = [];
    for await (const delta of result.textStream) deltas.push(delta);
    expect(deltas.join('')).toBe('tok0 tok1 tok2 ');
    expect(await result.finishReason).toBe('stop');
    expect(await result.usage).toMatchObject(expectedUsage);
    expect((await settledSpend()) - before).toBeCloseTo(handPricedUsd(provider.modelId, provider.bill), 12);
  });

  it('generateText with a spent budget throws APICallError 429, and nothing reaches the upstream', async () => {
    const err = await generateText({ model: provider.model(poorKey), prompt: PROMPT, maxRetries: 0 }).catch(
      (e: unknown) => e,
    );
    expect(APICallError.isInstance(err)).toBe(true);
    expect((err as APICallError).statusCode).toBe(429);
    expect((err as APICallError).responseHeaders?.['x-should-retry']).toBe('false');
    expect(gw.mock.requests).toHaveLength(0);
  });

  it('streamText with a spent budget reports APICallError 429 through onError', async () => {
    const errors: unknown[] = [];
    const result = streamText({
      model: provider.model(poorKey),
      prompt: PROMPT,
      maxRetries: 0,
      onError: ({ error }) => void errors.push(error),
    });
    await result.consumeStream();
    expect(errors).toHaveLength(1);
    expect(APICallError.isInstance(errors[0])).toBe(true);
    expect((errors[0] as APICallError).statusCode).toBe(429);
  });
});
