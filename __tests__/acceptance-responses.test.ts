// Acceptance, from a user's side: the OpenAI Responses API through the example gateway with the
// official `openai` SDK as installed. Text and events arrive whole, streams end at
// `response.completed` with no false error, stored-response routes cost nothing, and the bill is
// the catalog's price applied to each token class the upstream reported.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { handPricedUsd, startGateway, type Running } from './support/acceptance.js';
import { waitFor } from './support/http.js';

let gw: Running;
let key: { id: string; key: string };
let client: OpenAI;

beforeAll(async () => {
  gw = await startGateway();
  key = await gw.createKey({ name: 'responses-user', budgetUsd: 50 });
  client = new OpenAI({ apiKey: key.key, baseURL: gw.v1, maxRetries: 0 });
});
afterEach(() => {
  gw.mock.reset();
});
afterAll(async () => {
  await gw.close();
});

const PROMPT = 'Write one short greeting for the people reading this test';
/** The event types a plain three-chunk text answer streams, in order. */
const TEXT_EVENTS = [
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
];

/** The key's spend once every request so far has settled. */
async function settledSpend(): Promise<number> {
  await gw.settled();
  return gw.spendOf(key.id);
}

describe('client.responses.create', () => {
  it('returns the whole text as output_text, with the usage the upstream reported', async () => {
    const response = await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT });
    expect(response.status).toBe('completed');
    expect(response.output_text).toBe('tok0 tok1 tok2 ');
    expect(response.usage).toMatchObject({ input_tokens: 10, output_tokens: 3, total_tokens: 13 });
    expect(gw.mock.requests.at(-1)!.path).toBe('/v1/responses');
  });

  it('streams every event in order, ends at response.completed, and sends no error frame', async () => {
    const stream = await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.type)).toEqual(TEXT_EVENTS);
    expect(events.map((event) => event.sequence_number)).toEqual(TEXT_EVENTS.map((_, i) => i));
    const last = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(last.response.status).toBe('completed');
    expect(last.response.usage).toMatchObject({ input_tokens: 10, output_tokens: 3 });
  });

  it('relays the raw stream with no [DONE], no llmux error frame and no truncation', async () => {
    const res = await fetch(`${gw.v1}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: PROMPT, stream: true }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toMatch(/upstream_stream_truncated|event: error|\[DONE\]/);
    expect(text.trimEnd().split('\n\n').at(-1)).toMatch(/^event: response\.completed\n/);
  });

  it('gives finalResponse() the whole response through client.responses.stream', async () => {
    const deltas: string[] = [];
    const stream = client.responses.stream({ model: 'gpt-4o-mini', input: PROMPT });
    stream.on('response.output_text.delta', (event) => deltas.push(event.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe('tok0 tok1 tok2 ');
    expect(final.status).toBe('completed');
    expect(final.output_text).toBe('tok0 tok1 tok2 ');
    expect(final.usage).toMatchObject({ input_tokens: 10, output_tokens: 3 });
  });
});

describe('stored responses', () => {
  it('retrieves a response and lists its input items without spending anything', async () => {
    const created = await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT });
    const before = await settledSpend();
    expect(before).toBeGreaterThan(0);
    const retrieved = await client.responses.retrieve(created.id);
    expect(retrieved).toMatchObject({ id: created.id, status: 'completed', output_text: 'tok0 tok1 tok2 ' });
    const items = [];
    for await (const item of client.responses.inputItems.list(created.id)) items.push(item);
    expect(items).toHaveLength(1);
    expect(await settledSpend()).toBe(before);
  });

  it('counts input tokens for free, even for a key whose budget is spent', async () => {
    const poor = await gw.createKey({ name: 'counting', budgetUsd: 0.000001 });
    const poorClient = new OpenAI({ apiKey: poor.key, baseURL: gw.v1, maxRetries: 0 });
    // The mock does not serve this route: the answer is scripted as OpenAI sends it.
    gw.mock.enqueue({ body: { object: 'response.input_tokens', input_tokens: 10 } });
    const count = await poorClient.responses.inputTokens.count({ model: 'gpt-4o-mini', input: PROMPT });
    expect(count).toEqual({ object: 'response.input_tokens', input_tokens: 10 });
    expect(gw.mock.requests.at(-1)!.path).toBe('/v1/responses/input_tokens');
    await gw.settled();
    expect(await gw.spendOf(poor.id)).toBe(0);
  });

  it('deletes a response, and then cannot retrieve it', async () => {
    const created = await client.responses.create({ model: 'gpt-4o-mini', input: PROMPT });
    const before = await settledSpend();
    // Typed `void` by the SDK, which still hands back the body it read.
    await expect(client.responses.delete(created.id)).resolves.toMatchObject({ deleted: true });
    expect(gw.mock.requests.at(-1)).toMatchObject({ method: 'DELETE', path: `/v1/responses/${created.id}` });
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(await settledSpend()).toBe(before);
  });

  it('cancels a background response, billed at its reservation once and not again', async () => {
    const before = await settledSpend();
    const queued = await client.responses.create({
      model: 'gpt-4o-mini',
      input: PROMPT,
      background: true,
      max_output_tokens: 100,
    });
    expect(queued.status).toBe('queued');
    const charged = (await settledSpend()) - before;
    // No usage comes with a queued response: the reservation (the prompt estimate and the whole
    // output cap) is the bill, never nothing.
    expect(charged).toBeGreaterThanOrEqual(handPricedUsd('gpt-4o-mini', { input: 10, output: 100 }));
    const cancelled = await client.responses.cancel(queued.id);
    expect(cancelled).toMatchObject({ id: queued.id, status: 'cancelled' });
    expect((await settledSpend()) - before).toBe(charged);
  });

  it('bills nothing for a background request whose client left before any answer', async () => {
    const before = await settledSpend();
    gw.mock.enqueue({ delayBeforeHeadersMs: 5_000 });
    const leaving = new AbortController();
    const created = client.responses.create(
      { model: 'gpt-4o-mini', input: PROMPT, background: true, max_output_tokens: 100 },
      { signal: leaving.signal },
    );
    await waitFor(() => gw.mock.requests.length > 0 && gw.mock.requests.at(-1)!.path === '/v1/responses', {
      what: 'the request upstream',
    });
    leaving.abort();
    await expect(created).rejects.toBeInstanceOf(OpenAI.APIUserAbortError);
    // No answer reached the client: its status was never sent, so nothing is billed.
    expect(await settledSpend()).toBe(before);
  });
});

describe('the bill', () => {
  it.each([
    ['JSON', false],
    ['a stream', true],
  ])(
    'of %s is the catalog price of each token class: uncached, cached, output with reasoning',
    async (_name, stream) => {
      gw.mock.enqueue({ usage: { cachedTokens: 900, reasoningTokens: 40 } });
      const before = await settledSpend();
      let usage: OpenAI.Responses.ResponseUsage | undefined;
      if (stream) {
        usage = (await client.responses.stream({ model: 'o3', input: PROMPT }).finalResponse()).usage;
      } else {
        usage = (await client.responses.create({ model: 'o3', input: PROMPT })).usage;
      }
      expect(usage).toMatchObject({
        input_tokens: 910,
        input_tokens_details: { cached_tokens: 900 },
        output_tokens: 43,
        output_tokens_details: { reasoning_tokens: 40 },
      });
      // o3: $2 input, $0.50 cached input, $8 output per million tokens.
      const expected = handPricedUsd('o3', { input: 10, cached: 900, output: 43 });
      expect(expected).toBeCloseTo((10 * 2 + 900 * 0.5 + 43 * 8) / 1e6, 15);
      expect((await settledSpend()) - before).toBeCloseTo(expected, 12);
    },
  );

  it('refuses a spent budget with the SDK typed RateLimitError, code insufficient_quota', async () => {
    const poor = await gw.createKey({ name: 'poor', budgetUsd: 0.000001 });
    const poorClient = new OpenAI({ apiKey: poor.key, baseURL: gw.v1, maxRetries: 0 });
    const err = await poorClient.responses.create({ model: 'gpt-4o-mini', input: PROMPT }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('insufficient_quota');
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).headers.get('x-should-retry')).toBe('false');
    expect(gw.mock.requests).toHaveLength(0);
  });
});
