import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import {
  bodyLimit,
  getContext,
  streamRelay,
  type RequestContext,
  type StreamRelayOptions,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'say hello to the relay' }],
  ...extra,
});

/** Parses an SSE body into its data payloads and event names. */
function sseEvents(text: string): { event: string | undefined; data: string }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim().length > 0)
    .map((block) => {
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        if (line.startsWith('data:')) data.push(line.slice(5).trim());
      }
      return { event, data: data.join('\n') };
    });
}

const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

/** Polls `condition` every 10 ms for up to 2 s (socket teardown crosses the loopback). */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

describe.each(expressVersions)('streamRelay on %s', (_label, express) => {
  let mock: MockUpstream;
  let contexts: RequestContext[];

  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });
  afterEach(() => {
    mock.reset();
  });

  function makeApp(options: Partial<StreamRelayOptions> = {}) {
    contexts = [];
    const relay = streamRelay({
      upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-secret-1'] },
      ...options,
    });
    const app = express();
    app.use((_req, res, next) => {
      res.on('close', () => {
        const ctx = getContext(res);
        if (ctx) contexts.push(ctx);
      });
      next();
    });
    app.post('/v1/chat/completions', bodyLimit(), relay);
    app.post('/v1/embeddings', bodyLimit(), relay);
    return { app, relay };
  }

  it('relays a JSON completion with the relay key, never the client key', async () => {
    const { app, relay } = makeApp();
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', 'Bearer sk-client-key-123456')
      .set('x-request-id', 'trace-42')
      .send(chat());
    expect(res.status).toBe(200);
    expect(res.body.object).toBe('chat.completion');
    expect(res.headers['x-request-id']).toBe('trace-42');
    const seen = mock.requests.at(-1)!;
    expect(seen.path).toBe('/v1/chat/completions');
    expect(seen.headers.authorization).toBe('Bearer sk-upstream-secret-1');
    expect(JSON.stringify(seen.headers)).not.toContain('sk-client-key');
    expect(seen.headers['x-request-id']).toBe('trace-42');
    await relay.close();
  });

  it('records the usage of a JSON answer in the context', async () => {
    const { app, relay } = makeApp();
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.body.usage.total_tokens).toBeGreaterThan(0);
    expect(contexts[0]!.usage).toEqual({
      promptTokens: res.body.usage.prompt_tokens,
      completionTokens: res.body.usage.completion_tokens,
      totalTokens: res.body.usage.total_tokens,
      cachedTokens: 0,
      cacheWriteTokens: 0,
      reasoningTokens: 0,
      audioPromptTokens: 0,
      audioCompletionTokens: 0,
    });
    expect(contexts[0]!.attempts).toBe(1);
    await relay.close();
  });

  it('relays embeddings and reads their usage', async () => {
    const { app, relay } = makeApp();
    const res = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(2);
    expect(contexts[0]!.usage?.promptTokens).toBe(res.body.usage.prompt_tokens);
    await relay.close();
  });

  it('streams SSE chunks, ends with [DONE] and reads usage it asked for on the client’s behalf', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 5 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['cache-control']).toContain('no-transform');
    const events = sseEvents(res.text);
    expect(events.at(-1)!.data).toBe('[DONE]');
    // The usage-only chunk was requested by the relay, so the client does not see it.
    expect(events.some((e) => e.data.includes('"choices":[]'))).toBe(false);
    expect(mock.requests.at(-1)!.body).toMatchObject({ stream_options: { include_usage: true } });
    expect(contexts[0]!.usage?.completionTokens).toBe(5);
    await relay.close();
  });

  it('passes the usage chunk through when the client asked for it', async () => {
    const { app, relay } = makeApp();
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true, stream_options: { include_usage: true } }));
    const usageEvents = sseEvents(res.text).filter((e) => e.data.includes('"usage":{'));
    expect(usageEvents).toHaveLength(1);
    expect(contexts[0]!.usage).toBeDefined();
    await relay.close();
  });

  it('does not ask for stream usage when requestStreamUsage is false', async () => {
    const { app, relay } = makeApp({ requestStreamUsage: false });
    await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(mock.requests.at(-1)!.body).not.toHaveProperty('stream_options');
    expect(contexts[0]!.usage).toBeUndefined();
    await relay.close();
  });

  it.each([
    [{ status: 429, retryAfter: '7' }, 429, 'rate_limited'],
    [{ status: 500 }, 502, 'upstream_error'],
    [{ status: 500, rawBody: '' }, 502, 'upstream_decode_error'],
    [{ status: 502, rawBody: '<html>bad gateway</html>' }, 502, 'upstream_decode_error'],
    [{ status: 401 }, 502, 'upstream_auth_error'],
    [
      {
        status: 400,
        body: {
          error: {
            message: 'too long',
            type: 'invalid_request_error',
            code: 'context_length_exceeded',
            param: 'messages',
          },
        },
      },
      400,
      'context_length_exceeded',
    ],
    [
      { status: 200, body: { error: { message: 'overloaded', type: 'server_error' } } },
      502,
      'upstream_error',
    ],
    [{ status: 200, rawBody: '' }, 502, 'upstream_decode_error'],
    [{ status: 200, rawBody: '{"id":' }, 502, 'upstream_decode_error'],
  ])('maps upstream %j to %i %s', async (behaviour, status, code) => {
    const { app, relay } = makeApp();
    mock.enqueue(behaviour);
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(res.body.error).toHaveProperty('message');
    expect(res.body.error).toHaveProperty('type');
    expect(contexts[0]!.errorCode).toBe(code);
    await relay.close();
  });

  it('keeps the upstream status in the message of a decode error', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ status: 503, rawBody: '' });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.body.error.message).toContain('503');
    await relay.close();
  });

  it('sends Retry-After on a relayed 429', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ status: 429, retryAfter: '7' });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.headers['retry-after']).toBe('7');
    await relay.close();
  });

  it('answers 504 upstream_timeout when the first byte takes too long', async () => {
    const { app, relay } = makeApp({ firstByteTimeoutMs: 100 });
    mock.enqueue({ delayBeforeHeadersMs: 2_000 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    await relay.close();
  });

  it('answers 504 when the stream goes idle before its first event', async () => {
    const { app, relay } = makeApp({ idleTimeoutMs: 150 });
    mock.enqueue({ chunks: 3, chunkDelayMs: 1_000 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    await relay.close();
  });

  it('ends with an SSE error frame when the stream goes idle after it started', async () => {
    const { app, relay } = makeApp({ idleTimeoutMs: 150 });
    mock.enqueue({ chunks: 3, stallAfterChunks: 1, stallMs: 1_000 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(200);
    const events = sseEvents(res.text);
    expect(events[0]!.data).toContain('chat.completion.chunk');
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('upstream_timeout');
    await relay.close();
  });

  it('never ends a truncated stream cleanly: no [DONE] means an error frame', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 3, omitDone: true });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('upstream_stream_truncated');
    expect(contexts[0]!.errorCode).toBe('upstream_stream_truncated');
    await relay.close();
  });

  it('ends with an SSE error frame when the upstream resets mid-stream', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 5, resetAfterChunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.filter((e) => e.data.includes('chat.completion.chunk')).length).toBe(2);
    expect(events.at(-1)!.event).toBe('error');
    await relay.close();
  });

  it('answers 502 upstream_unreachable when the upstream resets before headers', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ resetBeforeHeaders: true });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_unreachable');
    await relay.close();
  });

  it('turns an upstream error frame mid-stream into a normalized error frame and stops', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 5, errorFrameAfterChunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data)).toHaveProperty('error.code');
    expect(events.some((e) => e.data === '[DONE]')).toBe(false);
    await relay.close();
  });

  it('answers an error frame that opens the stream with a plain HTTP error', async () => {
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 3, errorFrameAfterChunks: 0 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_error');
    await relay.close();
  });

  it('refuses a JSON answer above maxResponseBytes with 502', async () => {
    const { app, relay } = makeApp({ maxResponseBytes: 200 });
    mock.enqueue({ body: { id: 'x', padding: 'y'.repeat(1000) } });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_response_too_large');
    await relay.close();
  });

  it('aborts the upstream at once when the client disconnects mid-stream', async () => {
    await waitFor(() => mock.openConnections() === 0);
    const baseline = sockets();
    const { app, relay } = makeApp();
    mock.enqueue({ chunks: 50, chunkDelayMs: 20 });
    const server = http.createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    const settled = mock.waitForSettled(1);
    await new Promise<void>((resolve, reject) => {
      const clientReq = http.request(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.once('data', () => {
            clientReq.destroy();
            resolve();
          });
        },
      );
      clientReq.on('error', () => undefined);
      clientReq.end(JSON.stringify(chat({ stream: true })));
      setTimeout(() => reject(new Error('no data')), 5_000).unref();
    });
    const [record] = await settled;
    expect(record!.aborted).toBe(true);
    expect(record!.completed).toBe(false);
    await relay.close();
    await new Promise((resolve) => server.close(resolve));
    expect(contexts[0]!.errorCode).toBe('client_closed');
    // The relay's upstream socket is gone, not parked: the mock sees no connection left.
    await waitFor(() => mock.openConnections() === 0);
    expect(sockets()).toBeLessThanOrEqual(baseline);
  });

  it('throws a TypeError naming a bad option', () => {
    expect(() => streamRelay({ upstream: 'not a url' })).toThrow(/url/);
    expect(() => streamRelay({ upstream: mock.url, firstByteTimeoutMs: 0 })).toThrow(/firstByteTimeoutMs/);
    expect(() => streamRelay({ upstream: mock.url, forwardHeaders: ['authorization'] })).toThrow(
      /forwardHeaders/,
    );
  });
});
