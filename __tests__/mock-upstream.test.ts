// The mock upstream over real HTTP (undici client, no stubs): default shapes, scripting, recording,
// connection handling and the promise that it leaves no timer or socket behind.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import {
  createMockUpstream,
  type MockUpstream,
  type MockUpstreamOptions,
  type RecordedRequest,
} from '../lib/testing/index.js';
import { waitFor, watchResources, type ResourceWatch } from './support/http.js';

const agent = new Agent({ keepAliveTimeout: 2_000 });

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function call(
  mock: MockUpstream,
  path: string,
  body?: unknown,
  dispatcher: Agent = agent,
): Promise<Reply> {
  const res = await request(`${mock.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
    dispatcher,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** The payloads of an SSE body, in order; every event must be a single `data:` line. */
function frames(text: string): string[] {
  return text
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      expect(block.startsWith('data: ')).toBe(true);
      return block.slice('data: '.length);
    });
}

/** Streams a POST and collects what arrived before the body ended or failed. */
async function streamUntilError(
  mock: MockUpstream,
  body: unknown,
): Promise<{ text: string; error: unknown }> {
  const res = await request(`${mock.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify(body),
    dispatcher: agent,
  });
  let text = '';
  try {
    for await (const chunk of res.body) text += String(chunk);
  } catch (error) {
    return { text, error };
  }
  return { text, error: undefined };
}

/** The library's own code (the mock lives in lib/testing), as its frames show in a stack. */
const LIB_CODE = fileURLToPath(new URL('../lib/', import.meta.url));

/** Timers made since `watch` started that keep the process alive or that the mock made. */
const timersOf = (watch: ResourceWatch): number =>
  watch.live('Timeout', { refed: true }) + watch.live('Timeout', { from: LIB_CODE });

/** Waits, bounded, for every timer counted by {@link timersOf} to be gone. */
const timersGone = (watch: ResourceWatch): Promise<void> =>
  waitFor(() => timersOf(watch) === 0, { what: "the mock's timers to be gone", detail: watch.describe });

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-test',
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: '  hello there\n world ' },
  ],
  ...extra,
});

afterAll(async () => {
  await agent.close();
});

describe('createMockUpstream', () => {
  let mock: MockUpstream;

  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });
  afterEach(() => {
    mock.reset();
  });

  it('listens on an ephemeral loopback port', () => {
    expect(mock.port).toBeGreaterThan(0);
    expect(mock.url).toBe(`http://127.0.0.1:${mock.port}`);
  });

  it('answers a chat completion with the default shape and deterministic usage', async () => {
    const reply = await call(mock, '/v1/chat/completions', chat());
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json');
    const body = JSON.parse(reply.text);
    expect(body).toEqual({
      id: 'chatcmpl-mock-1',
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'gpt-test',
      choices: [
        { index: 0, message: { role: 'assistant', content: 'tok0 tok1 tok2 ' }, finish_reason: 'stop' },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    });
  });

  it('defaults the model and counts at least one prompt token', async () => {
    const body = JSON.parse((await call(mock, '/v1/chat/completions', { messages: [] })).text);
    expect(body.model).toBe('mock-model');
    expect(body.usage).toEqual({ prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 });
  });

  it('answers a text completion with the text_completion shape', async () => {
    const body = JSON.parse((await call(mock, '/v1/completions', { model: 'm', prompt: ['a b', 'c'] })).text);
    expect(body).toMatchObject({
      id: 'cmpl-mock-1',
      object: 'text_completion',
      choices: [{ text: 'tok0 tok1 tok2 ', index: 0, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });
  });

  it('streams one chunk per token, a stop chunk and [DONE], without usage unless asked', async () => {
    mock.enqueue({ chunks: 4 });
    const reply = await call(mock, '/v1/chat/completions', chat({ stream: true }));
    expect(reply.headers['content-type']).toBe('text/event-stream');
    const events = frames(reply.text);
    expect(events).toHaveLength(6);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: 'tok0 ' });
    expect(chunks.slice(1, 4).map((chunk) => chunk.choices[0].delta)).toEqual([
      { content: 'tok1 ' },
      { content: 'tok2 ' },
      { content: 'tok3 ' },
    ]);
    expect(chunks[4].choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({
        id: 'chatcmpl-mock-1',
        object: 'chat.completion.chunk',
        model: 'gpt-test',
      });
      expect(chunk).not.toHaveProperty('usage');
    }
  });

  it('adds usage:null to every chunk and a usage chunk before [DONE] when include_usage is set', async () => {
    const reply = await call(
      mock,
      '/v1/chat/completions',
      chat({ stream: true, stream_options: { include_usage: true } }),
    );
    const events = frames(reply.text);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event));
    expect(chunks).toHaveLength(5);
    for (const chunk of chunks.slice(0, 4)) expect(chunk.usage).toBeNull();
    expect(chunks[4].choices).toEqual([]);
    expect(chunks[4].usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
  });

  it('never sends usage when omitUsage is set', async () => {
    mock.enqueue({ omitUsage: true }, { omitUsage: true });
    expect(JSON.parse((await call(mock, '/v1/chat/completions', chat())).text)).not.toHaveProperty('usage');
    const streamed = await call(
      mock,
      '/v1/chat/completions',
      chat({ stream: true, stream_options: { include_usage: true } }),
    );
    expect(streamed.text).not.toContain('usage');
    expect(frames(streamed.text).at(-1)).toBe('[DONE]');
  });

  it('uses queued behaviours in arrival order, then the default behaviour', async () => {
    mock.setBehaviour({ content: 'fallback' });
    mock.enqueue({ status: 429 }, { status: 500 });
    expect(mock.pendingBehaviours()).toBe(2);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(mock, '/v1/chat/completions', chat())).status);
    expect(statuses).toEqual([429, 500, 200]);
    expect(mock.pendingBehaviours()).toBe(0);
    const last = JSON.parse((await call(mock, '/v1/chat/completions', chat({ stream: false }))).text);
    expect(last.choices[0].message.content).toBe('fallback fallback fallback ');
  });

  it('calls a behaviour factory with the recorded request', async () => {
    const seen: RecordedRequest[] = [];
    mock.setBehaviour((recorded) => {
      seen.push(recorded);
      return { chunks: 1, content: String((recorded.body as { model: string }).model) };
    });
    const body = JSON.parse((await call(mock, '/v1/chat/completions', chat())).text);
    expect(body.choices[0].message.content).toBe('gpt-test ');
    expect(seen[0]).toMatchObject({ seq: 1, method: 'POST', path: '/v1/chat/completions', body: chat() });
  });

  it('answers 500 mock_behaviour_error when the factory throws', async () => {
    mock.setBehaviour(() => {
      throw new Error('boom');
    });
    const reply = await call(mock, '/v1/chat/completions', chat());
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.text).error.code).toBe('mock_behaviour_error');
  });

  it.each([
    [400, 'invalid_request_error', 'invalid_request'],
    [401, 'authentication_error', 'invalid_api_key'],
    [429, 'rate_limit_error', 'rate_limit_exceeded'],
    [500, 'server_error', 'server_error'],
    [503, 'server_error', 'service_unavailable'],
  ])('sends an OpenAI-shaped error body for status %i', async (status, type, code) => {
    mock.enqueue({ status });
    const reply = await call(mock, '/v1/chat/completions', chat({ stream: true }));
    expect(reply.status).toBe(status);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(JSON.parse(reply.text)).toEqual({
      error: { message: `mock error ${status}`, type, code, param: null },
    });
  });

  it('sends body verbatim, rawBody byte for byte, and extra headers', async () => {
    mock.enqueue(
      { body: { hello: ['world'] }, status: 201 },
      { rawBody: '', status: 502 },
      { rawBody: 'not json', headers: { 'Content-Type': 'text/html', 'x-extra': '1' } },
    );
    const json = await call(mock, '/v1/chat/completions', chat());
    expect([json.status, json.text]).toEqual([201, '{"hello":["world"]}']);
    const empty = await call(mock, '/v1/chat/completions', chat());
    expect([empty.status, empty.text, empty.headers['content-length']]).toEqual([502, '', '0']);
    const raw = await call(mock, '/v1/chat/completions', chat());
    expect([raw.status, raw.text, raw.headers['content-type'], raw.headers['x-extra']]).toEqual([
      200,
      'not json',
      'text/html',
      '1',
    ]);
  });

  it('sets Retry-After from retryAfter', async () => {
    mock.enqueue({ status: 429, retryAfter: '7' });
    const reply = await call(mock, '/v1/chat/completions', chat());
    expect(reply.headers['retry-after']).toBe('7');
  });

  it('waits delayBeforeHeadersMs before answering', async () => {
    mock.enqueue({ delayBeforeHeadersMs: 40 });
    const startedAt = performance.now();
    await call(mock, '/v1/chat/completions', chat());
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(35);
  });

  it('resets the connection before headers with resetBeforeHeaders', async () => {
    mock.enqueue({ resetBeforeHeaders: true });
    const failure = await call(mock, '/v1/chat/completions', chat()).catch((error: unknown) => error);
    expect((failure as { code?: string }).code).toMatch(/^(ECONNRESET|UND_ERR_SOCKET)$/);
    const [record] = await mock.waitForSettled(1);
    expect(record).toMatchObject({ settled: true, completed: false, aborted: false });
  });

  it('delivers exactly resetAfterChunks chunks, then a socket error', async () => {
    mock.enqueue({ chunks: 5, resetAfterChunks: 2, chunkDelayMs: 5 });
    const { text, error } = await streamUntilError(mock, chat({ stream: true }));
    expect(frames(text).map((event) => JSON.parse(event).choices[0].delta.content)).toEqual([
      'tok0 ',
      'tok1 ',
    ]);
    expect((error as { code?: string }).code).toBe('UND_ERR_SOCKET');
    const [record] = await mock.waitForSettled(1);
    expect(record).toMatchObject({ completed: false, aborted: false });
  });

  it('ends cleanly without [DONE] when omitDone is set', async () => {
    mock.enqueue({ chunks: 2, omitDone: true });
    const { text, error } = await streamUntilError(mock, chat({ stream: true }));
    expect(error).toBeUndefined();
    const events = frames(text);
    expect(events).toHaveLength(3);
    expect(JSON.parse(events[2] as string).choices[0].finish_reason).toBe('stop');
  });

  it('writes an error frame after errorFrameAfterChunks chunks and ends without [DONE]', async () => {
    mock.enqueue({ chunks: 5, errorFrameAfterChunks: 1 });
    const { text, error } = await streamUntilError(mock, chat({ stream: true }));
    expect(error).toBeUndefined();
    const events = frames(text);
    expect(events).toHaveLength(2);
    expect(JSON.parse(events[1] as string)).toEqual({
      error: { message: 'mock stream error', type: 'server_error', code: 'mock_stream_error' },
    });
    const [record] = await mock.waitForSettled(1);
    expect(record!.completed).toBe(true);
  });

  it('pauses stallMs after stallAfterChunks chunks, then finishes', async () => {
    mock.enqueue({ chunks: 3, stallAfterChunks: 1, stallMs: 40 });
    const startedAt = performance.now();
    const reply = await call(mock, '/v1/chat/completions', chat({ stream: true }));
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(35);
    expect(frames(reply.text)).toHaveLength(5);
  });

  it('answers embeddings one deterministic 8-float vector per input', async () => {
    const first = JSON.parse(
      (await call(mock, '/v1/embeddings', { model: 'e', input: ['hello world', 'x'] })).text,
    );
    expect(first).toMatchObject({ object: 'list', model: 'e', usage: { prompt_tokens: 3, total_tokens: 3 } });
    expect(first.data).toHaveLength(2);
    first.data.forEach((item: { object: string; index: number; embedding: number[] }, index: number) => {
      expect(item.object).toBe('embedding');
      expect(item.index).toBe(index);
      expect(item.embedding).toHaveLength(8);
      for (const value of item.embedding) expect(Math.abs(value)).toBeLessThanOrEqual(1);
    });
    const again = JSON.parse((await call(mock, '/v1/embeddings', { input: 'hello world' })).text);
    expect(again.model).toBe('mock-embedding');
    expect(again.data[0].embedding).toEqual(first.data[0].embedding);
  });

  it('lists models on GET /v1/models, its own first', async () => {
    const body = JSON.parse((await call(mock, '/v1/models')).text);
    expect(body.object).toBe('list');
    expect(body.data.map((model: { id: string }) => model.id).slice(0, 2)).toEqual([
      'mock-model',
      'mock-embedding',
    ]);
  });

  it.each([
    ['GET', '/v1/chat/completions'],
    ['POST', '/v2/anything'],
  ])('answers %s %s with a 404 in the OpenAI error shape', async (method, path) => {
    const reply = await call(mock, path, method === 'POST' ? {} : undefined);
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.text)).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', code: 'unknown_url', param: null },
    });
  });

  it('answers invalid JSON with 400 invalid_json and records the raw body', async () => {
    const reply = await call(mock, '/v1/chat/completions', '{"model":');
    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text).error.code).toBe('invalid_json');
    expect(mock.requests[0]).toMatchObject({ rawBody: '{"model":', body: undefined });
  });

  it('records requests and emits request then settled', async () => {
    const events: string[] = [];
    const onRequest = (record: RecordedRequest) =>
      events.push(`request ${record.seq} ${record.rawBody.length > 0}`);
    const onSettled = (record: RecordedRequest) => events.push(`settled ${record.seq} ${record.completed}`);
    mock.on('request', onRequest).on('settled', onSettled);
    await call(mock, '/v1/chat/completions?x=1', chat());
    const records = await mock.waitForSettled(1);
    mock.off('request', onRequest).off('settled', onSettled);
    expect(events).toEqual(['request 1 true', 'settled 1 true']);
    expect(records).toEqual(mock.requests);
    expect(records[0]).toMatchObject({
      seq: 1,
      method: 'POST',
      path: '/v1/chat/completions?x=1',
      body: chat(),
      aborted: false,
      completed: true,
      settled: true,
    });
    expect(records[0]!.headers['content-type']).toBe('application/json');
  });

  it('rejects waitForSettled after its timeout', async () => {
    await expect(mock.waitForSettled(1, 20)).rejects.toThrow('0 of 1 requests settled within 20 ms');
  });

  it('refuses invalid behaviours and options with a TypeError naming the field', async () => {
    expect(() => mock.enqueue({ chunks: 1 }, { chunks: -1 })).toThrow(/chunks must be/);
    expect(mock.pendingBehaviours()).toBe(0);
    expect(() => mock.setBehaviour({ status: 99 })).toThrow(/status/);
    expect(() => mock.enqueue({ body: {}, rawBody: '' })).toThrow(TypeError);
    await expect(createMockUpstream({ maxRecorded: -1 })).rejects.toThrow(/maxRecorded/);
  });
});

describe('createMockUpstream connections and resources', () => {
  const opened: MockUpstream[] = [];
  async function open(options?: MockUpstreamOptions): Promise<MockUpstream> {
    const mock = await createMockUpstream(options);
    opened.push(mock);
    return mock;
  }
  const watches: ResourceWatch[] = [];
  /** Watches the timers made from now on (not the worker's or jest's); stopped after the test. */
  function watchTimers(): ResourceWatch {
    const watch = watchResources(['Timeout']);
    watches.push(watch);
    return watch;
  }
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((mock) => mock.close()));
    for (const watch of watches.splice(0)) watch.stop();
  });

  it('keeps only the last maxRecorded requests', async () => {
    const mock = await open({ maxRecorded: 3 });
    for (let i = 0; i < 5; i++) await call(mock, '/v1/models');
    expect(mock.requests.map((record) => record.seq)).toEqual([3, 4, 5]);
    expect(await mock.waitForSettled(5)).toHaveLength(3);
    await mock.close();
  });

  it('answers 413 above maxBodyBytes', async () => {
    const mock = await open({ maxBodyBytes: 64 });
    const reply = await call(mock, '/v1/chat/completions', { padding: 'x'.repeat(100) });
    expect(reply.status).toBe(413);
    expect(JSON.parse(reply.text).error.code).toBe('body_too_large');
    await mock.close();
  });

  it('marks a client abort mid-stream and leaves no timer behind', async () => {
    const timers = watchTimers();
    const mock = await open();
    mock.enqueue({ chunks: 50, chunkDelayMs: 20 });
    const controller = new AbortController();
    const res = await request(`${mock.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(chat({ stream: true })),
      dispatcher: agent,
      signal: controller.signal,
    });
    const reader = res.body[Symbol.asyncIterator]();
    await reader.next();
    expect(timersOf(timers)).toBeGreaterThan(0); // the delay before the next chunk
    controller.abort();
    await expect(reader.next()).rejects.toThrow();
    const [record] = await mock.waitForSettled(1);
    expect(record).toMatchObject({ aborted: true, completed: false, settled: true });
    await timersGone(timers);
    await mock.close();
    await timersGone(timers);
  });

  it('reuses keep-alive sockets and closes every connection, twice and concurrently', async () => {
    const mock = await open();
    const oneSocket = new Agent({ connections: 1 });
    await call(mock, '/v1/models', undefined, oneSocket);
    await call(mock, '/v1/chat/completions', chat(), oneSocket);
    await call(mock, '/v1/models', undefined, oneSocket);
    expect(mock.openConnections()).toBe(1);
    expect(mock.requests).toHaveLength(3);
    mock.enqueue({ chunks: 3, stallAfterChunks: 1 }); // stalls until the mock is closed
    const stalled = streamUntilError(mock, chat({ stream: true }));
    await new Promise<void>((resolve) => mock.on('request', () => resolve()));
    const waiting = expect(mock.waitForSettled(10)).rejects.toThrow(/closed with 4 of 10/);
    await Promise.all([mock.close(), mock.close()]);
    await mock.close();
    expect(mock.openConnections()).toBe(0);
    expect((await stalled).error).toBeDefined();
    await waiting;
    expect(mock.requests.at(-1)).toMatchObject({ seq: 4, settled: true, completed: false, aborted: false });
    await expect(call(mock, '/v1/models')).rejects.toThrow();
    await oneSocket.close();
  });
  it.each([
    ['/v1/responses', { model: 'gpt-5', input: 'hi', stream: true }],
    ['/v1/messages', { model: 'claude-sonnet-4-5', max_tokens: 50, messages: [], stream: true }],
  ])('leaves no timer or socket when closed mid-stream on %s', async (path, body) => {
    const timers = watchTimers();
    const mock = await open();
    // A long delay, so a timer that close() failed to clear would outlive the bounded wait below.
    mock.enqueue({ chunks: 50, chunkDelayMs: 10_000 }, { chunks: 5, stallAfterChunks: 1 });
    const readers = [];
    for (let i = 0; i < 2; i++) {
      const res = await request(`${mock.url}${path}`, {
        method: 'POST',
        body: JSON.stringify(body),
        dispatcher: agent,
      });
      const reader = res.body[Symbol.asyncIterator]();
      expect(String((await reader.next()).value)).toContain('event: ');
      readers.push(reader);
    }
    expect(timersOf(timers)).toBeGreaterThan(0); // the delay before the next chunk
    expect(mock.openConnections()).toBe(2);
    await mock.close();
    expect(mock.openConnections()).toBe(0);
    for (const reader of readers) {
      await expect(
        (async () => {
          while (!(await reader.next()).done);
        })(),
      ).rejects.toThrow();
    }
    expect(mock.requests.map((record) => [record.settled, record.completed, record.aborted])).toEqual([
      [true, false, false],
      [true, false, false],
    ]);
    await timersGone(timers);
  });
});
