// Acceptance of the accounting (issue 12), from a user's side with the official `openai` SDK: an
// unpriced model is refused (a spent key too), a model name in any case is priced, cached tokens
// are billed at the cached price, one key's budget holds under 200 parallel mixed requests (text,
// images, streams, clients that leave mid-stream), and the cost a client is shown is the one billed.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { crc32, deflateSync } from 'node:zlib';
import type { MockBehaviour, RecordedRequest } from '../lib/testing/index.js';
import {
  ADMIN_KEY,
  catalogPrice,
  handPricedUsd,
  startGateway,
  startPreset,
  type Running,
} from './support/acceptance.js';

const PROMPT = 'Write one short greeting for the people reading this test';

type OpenAiError = InstanceType<typeof OpenAI.APIError>;

function sdk(running: Running, apiKey: string): OpenAI {
  return new OpenAI({ apiKey, baseURL: running.v1, maxRetries: 0 });
}

/** A real PNG (8-bit grey, every pixel black) of `width` × `height`, as a base64 data URL. */
function pngDataUrl(width: number, height: number): string {
  const chunk = (type: string, data: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // greyscale
  // Each row: filter byte 0, then one byte a pixel.
  const pixels = deflateSync(Buffer.alloc((width + 1) * height));
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', pixels),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  return `data:image/png;base64,${png.toString('base64')}`;
}

/** OpenAI's published tile formula for GPT-4o-family images at `detail: auto/high`, by hand. */
function openAiTiles(width: number, height: number): number {
  const fit = Math.min(1, 2048 / Math.max(width, height));
  const [w1, h1] = [width * fit, height * fit];
  const shrink = Math.min(1, 768 / Math.min(w1, h1));
  return 85 + 170 * Math.ceil((w1 * shrink) / 512) * Math.ceil((h1 * shrink) / 512);
}

describe('pricing through the example gateway', () => {
  let gw: Running;

  beforeAll(async () => {
    gw = await startGateway();
  });
  afterEach(() => {
    gw.mock.reset();
  });
  afterAll(async () => {
    await gw.close();
  });

  const chat = (client: OpenAI, model: string) =>
    client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }] });

  it('refuses an unpriced model with 400 model_not_priced, and relays nothing', async () => {
    const fresh = await gw.createKey({ name: 'fresh', budgetUsd: 5 });
    const err = (await chat(sdk(gw, fresh.key), 'my-unpriced-model').catch((e) => e)) as OpenAiError;
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.code).toBe('model_not_priced');
    expect(err.param).toBe('model');
    expect(gw.mock.requests).toHaveLength(0);
  });

  it('prices GPT-4o in upper case as gpt-4o', async () => {
    const fresh = await gw.createKey({ name: 'upper-case', budgetUsd: 5 });
    const completion = await chat(sdk(gw, fresh.key), 'GPT-4o');
    expect(completion.usage).toMatchObject({ prompt_tokens: 10, completion_tokens: 3 });
    await gw.settled();
    expect(await gw.spendOf(fresh.id)).toBeCloseTo(handPricedUsd('gpt-4o', { input: 10, output: 3 }), 12);
  });

  it('refuses a key whose budget is spent, on a priced model and on an unpriced one', async () => {
    const spender = await gw.createKey({ name: 'spender', budgetUsd: 5 });
    const client = sdk(gw, spender.key);
    await chat(client, 'gpt-4o');
    await gw.settled();
    const spent = await gw.spendOf(spender.id);
    expect(spent).toBeGreaterThan(0);
    // The budget is now exactly what was spent: nothing is left.
    const patch = await fetch(`${gw.origin}/admin/keys/${spender.id}`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ budgetUsd: spent }),
    });
    expect(patch.status).toBe(200);
    gw.mock.reset();
    for (const model of ['gpt-4o', 'GPT-4o', 'gpt-4o-mini']) {
      const err = (await chat(client, model).catch((e) => e)) as OpenAiError;
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect(err.code).toBe('insufficient_quota');
    }
    // Refused either way: it has no price (checked first), and the key has nothing left.
    const unpriced = (await chat(client, 'my-unpriced-model').catch((e) => e)) as OpenAiError;
    expect(unpriced).toBeInstanceOf(OpenAI.APIError);
    expect(['model_not_priced', 'insufficient_quota']).toContain(unpriced.code);
    expect(gw.mock.requests).toHaveLength(0);
    await gw.settled();
    expect(await gw.spendOf(spender.id)).toBe(spent);
  });

  it('bills 9,000 cached of 10,000 prompt tokens at the cached price, not the full one', async () => {
    const key = await gw.createKey({ name: 'cached', budgetUsd: 5 });
    gw.mock.enqueue({ usage: { promptTokens: 10_000, cachedTokens: 9_000 } });
    const completion = await chat(sdk(gw, key.key), 'gpt-4o');
    expect(completion.usage).toMatchObject({
      prompt_tokens: 10_000,
      prompt_tokens_details: { cached_tokens: 9_000 },
      completion_tokens: 3,
    });
    await gw.settled();
    const spend = await gw.spendOf(key.id);
    // gpt-4o: $2.50 input, $1.25 cached input, $10 output per million.
    const cached = handPricedUsd('gpt-4o', { input: 1_000, cached: 9_000, output: 3 });
    expect(cached).toBeCloseTo((1_000 * 2.5 + 9_000 * 1.25 + 3 * 10) / 1e6, 15);
    expect(spend).toBeCloseTo(cached, 12);
    expect(spend).toBeLessThan(handPricedUsd('gpt-4o', { input: 10_000, output: 3 }));
  });
});

describe('one budget under 200 parallel mixed requests', () => {
  let gw: Running;

  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(async () => {
    await gw.close();
  });

  const MODEL = 'gpt-4o-mini';
  const CAP = 32;
  /** The cap that marks a stream the client will leave: the mock sends it slowly. */
  const LEAVING_CAP = 48;
  const IMAGES: [number, number][] = [
    [64, 64],
    [512, 512],
    [1024, 768],
    [2000, 1000],
  ];
  const imageUrls = IMAGES.map(([w, h]) => pngDataUrl(w, h));
  const TEXT =
    'Summarise the following note in one line: the quarterly figures arrived late, the team ' +
    'checked every table twice, and the report goes out on Monday morning after review.';

  /** What a real upstream would report: the text words, each image by OpenAI's formula, the chunks. */
  function behaviourOf(request: RecordedRequest): MockBehaviour {
    const body = request.body as { max_completion_tokens?: number; max_tokens?: number; messages: unknown[] };
    let imageTokens = 0;
    let words = 0;
    for (const message of body.messages as { content: unknown }[]) {
      const parts =
        typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
      for (const part of parts as { type: string; text?: string; image_url?: { url: string } }[]) {
        if (part.type === 'text') words += part.text!.split(/\s+/).filter(Boolean).length;
        else {
          const index = imageUrls.indexOf(part.image_url!.url);
          imageTokens += openAiTiles(...IMAGES[index]!);
        }
      }
    }
    const cap = body.max_completion_tokens ?? body.max_tokens;
    const leaving = cap === LEAVING_CAP;
    return {
      chunks: leaving ? LEAVING_CAP : 24,
      chunkDelayMs: leaving ? 20 : 0,
      usage: { promptTokens: words + imageTokens },
    };
  }

  it('never lets the settled spend pass the budget', async () => {
    gw.mock.setBehaviour(behaviourOf);
    // About a third of what all 200 cost when every one is served (about $0.0108), so most are refused.
    const BUDGET = 0.004;
    const key = await gw.createKey({ name: 'parallel', budgetUsd: BUDGET });
    const client = sdk(gw, key.key);
    const outcomes = { answered: 0, streamed: 0, left: 0, refused: 0, other: [] as string[] };

    const textChat = () =>
      client.chat.completions.create({
        model: MODEL,
        max_tokens: CAP,
        messages: [{ role: 'user', content: TEXT }],
      });
    const imageChat = (i: number) =>
      client.chat.completions.create({
        model: MODEL,
        max_completion_tokens: CAP,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in these pictures?' },
              { type: 'image_url', image_url: { url: imageUrls[i % IMAGES.length]! } },
              { type: 'image_url', image_url: { url: imageUrls[(i + 1) % IMAGES.length]! } },
            ],
          },
        ],
      });
    const stream = async (leave: boolean) => {
      const chunks = await client.chat.completions.create({
        model: MODEL,
        max_tokens: leave ? LEAVING_CAP : CAP,
        stream: true,
        messages: [{ role: 'user', content: TEXT }],
      });
      let received = 0;
      for await (const chunk of chunks) {
        if (chunk.choices[0]?.delta.content) received++;
        // Leaving: stop reading after a few chunks; the SDK aborts the request.
        if (leave && received === 3) return 'left' as const;
      }
      return 'streamed' as const;
    };

    const requests = Array.from({ length: 200 }, async (_, i) => {
      try {
        switch (i % 4) {
          case 0:
            await textChat();
            outcomes.answered++;
            return;
          case 1:
            await imageChat(i);
            outcomes.answered++;
            return;
          default:
            outcomes[await stream(i % 4 === 3)]++;
        }
      } catch (err) {
        if (err instanceof OpenAI.RateLimitError && err.code === 'insufficient_quota') outcomes.refused++;
        else outcomes.other.push(String(err));
      }
    });
    await Promise.all(requests);
    await gw.settled();
    const spend = await gw.spendOf(key.id);

    expect(outcomes.other).toEqual([]);
    expect(outcomes.refused).toBeGreaterThan(0);
    const admitted = outcomes.answered + outcomes.streamed + outcomes.left;
    expect(admitted).toBeGreaterThan(0);
    // A refused request never reaches the upstream; a client that left is cut off there too.
    expect(gw.mock.requests).toHaveLength(admitted);
    expect(gw.mock.requests.filter((request) => request.aborted)).toHaveLength(outcomes.left);
    expect(spend).toBeGreaterThan(0);
    // The tolerance observed is none: spend stays at or below the budget.
    expect(spend).toBeLessThanOrEqual(BUDGET);
  });
});

describe('a stream cut before its usage', () => {
  let app: Running;

  beforeAll(async () => {
    app = await startPreset();
  });
  afterAll(async () => {
    await app.close();
  });

  /** A chunk as OpenAI streams it. */
  const frame = (delta: unknown, finishReason: string | null = null) =>
    `data: ${JSON.stringify({
      id: 'chatcmpl-cut',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    })}\n\n`;

  it('is billed no more output than the request capped, though OpenAI frames outnumber tokens', async () => {
    const key = await app.createKey({ name: 'cut', budgetUsd: 1 });
    // OpenAI opens with a role-only chunk and ends with an empty finish chunk: 4 frames for 2
    // tokens. The connection drops before the usage chunk and `[DONE]`.
    app.mock.enqueue({
      headers: { 'content-type': 'text/event-stream' },
      rawBody:
        frame({ role: 'assistant', content: '' }) +
        frame({ content: 'Hello' }) +
        frame({ content: ' there' }) +
        frame({}, 'length'),
    });
    const chunks = await sdk(app, key.key).chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 2,
      stream: true,
      messages: [{ role: 'user', content: PROMPT }],
    });
    let text = '';
    const err = await (async () => {
      for await (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? '';
    })().catch((e: unknown) => e);
    expect(text).toBe('Hello there');
    expect((err as OpenAiError).code).toBe('upstream_stream_truncated');
    await app.settled();
    const today = new Date().toISOString().slice(0, 10);
    const report = await fetch(`${app.origin}/admin/spend?groupBy=key&from=${today}&to=${today}`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    const row = ((await report.json()) as { data: { group: string; completionTokens: number }[] }).data.find(
      (entry) => entry.group === key.id,
    );
    expect(row?.completionTokens).toBe(2);
  });

  it('bills an Anthropic stream cut after message_start by its input counts and the output relayed', async () => {
    const key = await app.createKey({ name: 'cut-anthropic', budgetUsd: 1 });
    // message_start carries the input (and cache) counts and a placeholder output of 1; the
    // connection drops after 5 text deltas, before message_delta brings the real output count.
    const event = (type: string, data: Record<string, unknown>) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const delta = (text: string) =>
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
    app.mock.enqueue({
      headers: { 'content-type': 'text/event-stream' },
      rawBody:
        event('message_start', {
          message: {
            id: 'msg_cut',
            type: 'message',
            role: 'assistant',
            model: 'claude-sonnet-4-5',
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: 10, cache_read_input_tokens: 90, output_tokens: 1 },
          },
        }) +
        event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
        ['a', ' b', ' c', ' d', ' e'].map(delta).join(''),
    });
    const anthropic = new Anthropic({ baseURL: app.origin, apiKey: key.key, maxRetries: 0 });
    let text = '';
    const err = await (async () => {
      const stream = anthropic.messages.stream({
        model: 'claude-sonnet-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: PROMPT }],
      });
      for await (const chunk of stream) {
        if (chunk.type === 'content_block_delta' && chunk.delta.type === 'text_delta')
          text += chunk.delta.text;
      }
    })().catch((e: unknown) => e);
    expect(text).toBe('a b c d e');
    expect(err).toBeDefined();
    await app.settled();
    const today = new Date().toISOString().slice(0, 10);
    const report = await fetch(`${app.origin}/admin/spend?groupBy=key&from=${today}&to=${today}`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    type Row = { group: string; promptTokens: number; cachedTokens: number; completionTokens: number };
    const row = ((await report.json()) as { data: Row[] }).data.find((entry) => entry.group === key.id);
    // Not the placeholder's 1 output token: the 5 deltas the client got, and message_start's input.
    expect(row).toMatchObject({ promptTokens: 100, cachedTokens: 90, completionTokens: 5 });
  });
});

describe('the cost shown to the client (exposeCost)', () => {
  let app: Running;
  let key: { id: string; key: string };

  beforeAll(async () => {
    app = await startPreset({ auth: { exposeCost: true } });
    key = await app.createKey({ name: 'cost-shown', budgetUsd: 5 });
  });
  afterEach(() => {
    app.mock.reset();
  });
  afterAll(async () => {
    await app.close();
  });

  async function spendDelta(run: () => Promise<number>): Promise<{ shown: number; billed: number }> {
    await app.settled();
    const before = await app.spendOf(key.id);
    const shown = await run();
    await app.settled();
    return { shown, billed: (await app.spendOf(key.id)) - before };
  }

  /** The cost in the last SSE comment of a raw stream. */
  async function streamedCost(
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<number> {
    const res = await fetch(`${app.origin}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const comment = text.trimEnd().split('\n\n').at(-1)!;
    expect(comment).toMatch(/^: x-llmux-cost-usd \d+\.\d{10}$/);
    return Number(comment.split(' ').at(-1));
  }

  it('on a JSON answer: the x-llmux-cost-usd header is what the key was billed', async () => {
    app.mock.enqueue({ usage: { cachedTokens: 500 } });
    const { shown, billed } = await spendDelta(async () => {
      const { response } = await sdk(app, key.key)
        .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }] })
        .withResponse();
      return Number(response.headers.get('x-llmux-cost-usd'));
    });
    expect(billed).toBeCloseTo(handPricedUsd('gpt-4o', { input: 10, cached: 500, output: 3 }), 12);
    expect(shown).toBeCloseTo(billed, 10);
  });

  it.each([
    [
      'Chat Completions',
      '/v1/chat/completions',
      { model: 'gpt-4o', messages: [{ role: 'user', content: PROMPT }] },
    ],
    ['Responses', '/v1/responses', { model: 'o3', input: PROMPT }],
    [
      'Messages',
      '/v1/messages',
      { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] },
    ],
  ])('on a %s stream: the last SSE comment is what the key was billed', async (_name, path, body) => {
    app.mock.enqueue({ usage: { cachedTokens: 500, cacheWriteTokens: 0 } });
    const { shown, billed } = await spendDelta(() => streamedCost(path, { ...body, stream: true }));
    expect(billed).toBeGreaterThan(0);
    expect(shown).toBeCloseTo(billed, 10);
  });

  it('leaves the SDKs reading such streams unharmed', async () => {
    const openai = sdk(app, key.key);
    const chunks = await openai.chat.completions.create({
      model: 'gpt-4o',
      stream: true,
      messages: [{ role: 'user', content: PROMPT }],
    });
    let text = '';
    for await (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('tok0 tok1 tok2 ');
    const response = await openai.responses.stream({ model: 'o3', input: PROMPT }).finalResponse();
    expect(response.output_text).toBe('tok0 tok1 tok2 ');
    const anthropic = new Anthropic({ baseURL: app.origin, apiKey: key.key, maxRetries: 0 });
    const message = await anthropic.messages
      .stream({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] })
      .finalMessage();
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'tok0 tok1 tok2 ' });
  });
});

// The catalog figures these tests rely on, so a price change is seen here first.
it('reads the catalog prices the bills above are worked out from', () => {
  expect(catalogPrice('gpt-4o')).toMatchObject({
    inputPerMTokUsd: 2.5,
    cachedInputPerMTokUsd: 1.25,
    outputPerMTokUsd: 10,
  });
  expect(catalogPrice('gpt-4o-mini')).toMatchObject({ inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
});
