// streamRelay against real Express apps (5 and 4) and a real mock upstream: JSON and SSE relaying,
// the mapping of upstream failures, the first-byte and idle timeouts, and the abort of a client
// that leaves. Each test gets its own mock and closes what it opened, so a stream still running
// after one test can neither take the next one's scripted behaviour nor hold its connections.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import {
  bodyLimit,
  getContext,
  streamRelay,
  type RequestContext,
  type StreamRelay,
  type StreamRelayOptions,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat, listen, postAndLeave, sseEvents, waitFor, watchResources } from './support/http.js';

describe.each(expressVersions)('streamRelay on %s', (_label, express) => {
  let mock: MockUpstream;
  let contexts: RequestContext[];
  let relays: StreamRelay[];

  beforeEach(async () => {
    mock = await createMockUpstream();
    relays = [];
  });
  afterEach(async () => {
    // The mock first: it cuts a stream a failed test left running, which relay.close() waits for.
    await mock.close();
    await Promise.all(relays.map((relay) => relay.close()));
  });

  function makeApp(options: Partial<StreamRelayOptions> = {}) {
    contexts = [];
    const relay = streamRelay({
      upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-secret-1'] },
      ...options,
    });
    relays.push(relay);
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
    const { app } = makeApp();
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
  });

  it('records the usage of a JSON answer in the context', async () => {
    const { app } = makeApp();
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
  });

  it('relays embeddings and reads their usage', async () => {
    const { app } = makeApp();
    const res = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(2);
    expect(contexts[0]!.usage?.promptTokens).toBe(res.body.usage.prompt_tokens);
  });

  it('streams SSE chunks, ends with [DONE] and reads usage it asked for on the client’s behalf', async () => {
    const { app } = makeApp();
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
  });

  it('passes the usage chunk through when the client asked for it', async () => {
    const { app } = makeApp();
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true, stream_options: { include_usage: true } }));
    const usageEvents = sseEvents(res.text).filter((e) => e.data.includes('"usage":{'));
    expect(usageEvents).toHaveLength(1);
    expect(contexts[0]!.usage).toBeDefined();
  });

  it('does not ask for stream usage when requestStreamUsage is false', async () => {
    const { app } = makeApp({ requestStreamUsage: false });
    await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(mock.requests.at(-1)!.body).not.toHaveProperty('stream_options');
    expect(contexts[0]!.usage).toBeUndefined();
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
    // A 2xx that is not JSON at all (an empty text/plain answer) is not a success.
    [{ rawBody: '', headers: { 'content-type': 'text/plain' } }, 502, 'upstream_decode_error'],
  ])('maps upstream %j to %i %s', async (behaviour, status, code) => {
    const { app } = makeApp();
    mock.enqueue(behaviour);
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(res.body.error).toHaveProperty('message');
    expect(res.body.error).toHaveProperty('type');
    expect(contexts[0]!.errorCode).toBe(code);
  });

  it('keeps the upstream status in the message of a decode error', async () => {
    const { app } = makeApp();
    mock.enqueue({ status: 503, rawBody: '' });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.body.error.message).toContain('503');
  });

  it('sends Retry-After on a relayed 429', async () => {
    const { app } = makeApp();
    mock.enqueue({ status: 429, retryAfter: '7' });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.headers['retry-after']).toBe('7');
  });

  // undici runs the first-byte and idle timeouts on its coarse timers (about 1 s granularity), so
  // a 100 ms timeout fires after up to a second: the upstreams below stay silent until the relay
  // gives up on them, never for a fixed time the timeout might outlast.
  it('answers 504 upstream_timeout when the first byte takes too long', async () => {
    const { app } = makeApp({ firstByteTimeoutMs: 100 });
    mock.enqueue({ delayBeforeHeadersMs: 60_000 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    const [record] = await mock.waitForSettled(1);
    expect(record!.aborted).toBe(true);
  });

  it('answers 504 when the stream goes idle before its first event', async () => {
    const { app } = makeApp({ idleTimeoutMs: 150 });
    mock.enqueue({ chunks: 3, stallAfterChunks: 0 }); // headers, then silence until the relay leaves
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    const [record] = await mock.waitForSettled(1);
    expect(record!.aborted).toBe(true);
  });

  it('ends with an SSE error frame when the stream goes idle after it started', async () => {
    const { app } = makeApp({ idleTimeoutMs: 150 });
    mock.enqueue({ chunks: 3, stallAfterChunks: 1 }); // one chunk, then silence until the relay leaves
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(200);
    const events = sseEvents(res.text);
    expect(events[0]!.data).toContain('chat.completion.chunk');
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('upstream_timeout');
    const [record] = await mock.waitForSettled(1);
    expect(record!.aborted).toBe(true);
  });

  it('never ends a truncated stream cleanly: no [DONE] means an error frame', async () => {
    const { app } = makeApp();
    mock.enqueue({ chunks: 3, omitDone: true });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data).error.code).toBe('upstream_stream_truncated');
    expect(contexts[0]!.errorCode).toBe('upstream_stream_truncated');
  });

  it('ends with an SSE error frame when the upstream resets mid-stream', async () => {
    const { app } = makeApp();
    mock.enqueue({ chunks: 5, resetAfterChunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.filter((e) => e.data.includes('chat.completion.chunk')).length).toBe(2);
    expect(events.at(-1)!.event).toBe('error');
  });

  it('answers 502 upstream_unreachable when the upstream resets before headers', async () => {
    const { app } = makeApp();
    mock.enqueue({ resetBeforeHeaders: true });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_unreachable');
  });

  it('turns an upstream error frame mid-stream into a normalized error frame and stops', async () => {
    const { app } = makeApp();
    mock.enqueue({ chunks: 5, errorFrameAfterChunks: 2 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    const events = sseEvents(res.text);
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data)).toHaveProperty('error.code');
    expect(events.some((e) => e.data === '[DONE]')).toBe(false);
  });

  it('answers an error frame that opens the stream with a plain HTTP error', async () => {
    const { app } = makeApp();
    mock.enqueue({ chunks: 3, errorFrameAfterChunks: 0 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_error');
  });

  it('refuses a JSON answer above maxResponseBytes with 502', async () => {
    const { app } = makeApp({ maxResponseBytes: 200 });
    mock.enqueue({ body: { id: 'x', padding: 'y'.repeat(1000) } });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_response_too_large');
  });

  it('aborts the upstream at once when the client disconnects mid-stream', async () => {
    const sockets = watchResources(['TCPWRAP']);
    try {
      const { app, relay } = makeApp();
      mock.enqueue({ chunks: 50, chunkDelayMs: 20 });
      const server = await listen(app);
      const settled = mock.waitForSettled(1);
      await postAndLeave(server.port, chat({ stream: true }));
      // The upstream saw the abort before its stream ended (50 chunks take a second at least).
      const [record] = await settled;
      expect(record!.aborted).toBe(true);
      expect(record!.completed).toBe(false);
      await relay.close();
      await server.close();
      expect(contexts[0]!.errorCode).toBe('client_closed');
      // The relay's upstream socket is gone, not parked: the mock sees no connection left, and no
      // socket this test opened (client, relay, upstream ends) is still open.
      await waitFor(() => mock.openConnections() === 0, { what: 'the upstream connection to close' });
      await waitFor(() => sockets.live('TCPWRAP') === 0, {
        what: 'every socket of the test to close',
        detail: sockets.describe,
      });
    } finally {
      sockets.stop();
    }
  });

  it('throws a TypeError naming a bad option', () => {
    expect(() => streamRelay({ upstream: 'not a url' })).toThrow(/url/);
    expect(() => streamRelay({ upstream: mock.url, firstByteTimeoutMs: 0 })).toThrow(/firstByteTimeoutMs/);
    expect(() => streamRelay({ upstream: mock.url, forwardHeaders: ['authorization'] })).toThrow(
      /forwardHeaders/,
    );
  });
});
