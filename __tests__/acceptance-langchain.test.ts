// Acceptance, from a user's side: LangChain's `ChatOpenAI` as installed through the example
// gateway, on Chat Completions and with `useResponsesApi: true`: a call and a stream work, their
// usage metadata is the upstream's, and each is billed at the catalog price.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { ChatOpenAI } from '@langchain/openai';
import type { AIMessageChunk } from '@langchain/core/messages';
import { handPricedUsd, startGateway, type Running } from './support/acceptance.js';

const PROMPT = 'Write one short greeting for the people reading this test';

let gw: Running;
let key: { id: string; key: string };

beforeAll(async () => {
  gw = await startGateway();
  key = await gw.createKey({ name: 'langchain-user', budgetUsd: 50 });
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

describe.each([
  ['Chat Completions', false, '/v1/chat/completions'],
  ['the Responses API', true, '/v1/responses'],
])('ChatOpenAI on %s', (_name, useResponsesApi, path) => {
  const chat = () =>
    new ChatOpenAI({
      model: 'gpt-4o-mini',
      apiKey: key.key,
      configuration: { baseURL: gw.v1 },
      maxRetries: 0,
      useResponsesApi,
    });
  // The mock counts 10 prompt words, 900 of 910 prompt tokens cached, 3 chunks out.
  const bill = handPricedUsd('gpt-4o-mini', { input: 10, cached: 900, output: 3 });

  it('invokes, reads the usage, and is billed at the catalog price', async () => {
    gw.mock.enqueue({ usage: { cachedTokens: 900 } });
    const before = await settledSpend();
    const message = await chat().invoke(PROMPT);
    expect(gw.mock.requests.at(-1)!.path).toBe(path);
    expect(message.text).toBe('tok0 tok1 tok2 ');
    expect(message.usage_metadata).toMatchObject({
      input_tokens: 910,
      output_tokens: 3,
      total_tokens: 913,
      input_token_details: { cache_read: 900 },
    });
    expect((await settledSpend()) - before).toBeCloseTo(bill, 12);
  });

  it('streams, reads the usage, and is billed the same', async () => {
    gw.mock.enqueue({ usage: { cachedTokens: 900 } });
    const before = await settledSpend();
    let merged: AIMessageChunk | undefined;
    for await (const chunk of await chat().stream(PROMPT))
      merged = merged === undefined ? chunk : merged.concat(chunk);
    expect(merged!.text).toBe('tok0 tok1 tok2 ');
    expect(merged!.usage_metadata).toMatchObject({ input_tokens: 910, output_tokens: 3 });
    expect((await settledSpend()) - before).toBeCloseTo(bill, 12);
  });
});
