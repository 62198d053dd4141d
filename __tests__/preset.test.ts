import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import net from 'node:net';
import type { Server } from 'node:http';
import OpenAI from 'openai';
import request from 'supertest';
import {
  createServer,
  hashApiKey,
  llmux,
  MemoryKeyStore,
  RequestTracker,
  shutdown,
  type LlmuxRouter,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat, listen } from './support/http.js';

const KEY = 'sk-llmux-test-key-0001';

describe.each(expressVersions)('llmux() preset on %s', (_label, express) => {
  let mock: MockUpstream;
  let gateway: LlmuxRouter;
  let app: ReturnType<typeof express>;

  beforeAll(async () => {
    mock = await createMockUpstream();
    gateway = llmux({
      upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-only'] },
      auth: { keys: [{ id: 'tester', key: KEY }] },
      body: { maxBytes: 64 * 1024 },
      logger: { error: () => undefined },
    });
    app = express();
    app.use(gateway);
  });
  afterAll(async () => {
    await gateway.close();
    await mock.close();
  });

  it('refuses a request without a key with 401 invalid_api_key', async () => {
    const res = await request(app).post('/v1/chat/completions').send({ model: 'm', messages: [] });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_api_key');
  });

  it('relays a chat completion for a valid key', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${KEY}`)
      .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(res.body.choices[0].message.role).toBe('assistant');
  });

  it('passes /v1/models through with the upstream key', async () => {
    const res = await request(app).get('/v1/models').set('x-api-key', KEY);
    expect(res.status).toBe(200);
    expect(res.body.object).toBe('list');
    const seen = mock.requests.at(-1)!;
    expect(seen.path).toBe('/v1/models');
    expect(seen.headers.authorization).toBe('Bearer sk-upstream-only');
    expect(seen.headers['x-api-key']).toBeUndefined();
  });

  it('answers an unknown /v1 route with 404 in the OpenAI shape', async () => {
    const res = await request(app).post('/v1/nope').set('Authorization', `Bearer ${KEY}`).send({});
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });

  it('leaves routes outside /v1 to the host', async () => {
    app.get('/host-route', (_req, res) => {
      res.send('mine');
    });
    const res = await request(app).get('/host-route');
    expect(res.text).toBe('mine');
  });

  it("matches its routes with a query string, and passes one model's page through", async () => {
    for (const path of ['/v1/chat/completions?x=1', '/v1/embeddings']) {
      const res = await request(app)
        .post(path)
        .set('Authorization', `Bearer ${KEY}`)
        .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      expect([path, res.status]).toEqual([path, 200]);
    }
    // One model's page goes to the upstream too (the mock lists models only, so it answers 404).
    await request(app).get('/v1/models/gpt-4o-mini').set('x-api-key', KEY);
    expect(mock.requests.at(-1)!.path).toBe('/v1/models/gpt-4o-mini');
  });

  it('answers a wrong method, another case, a trailing slash, a nested models path and /v1 with 404', async () => {
    for (const [method, path] of [
      ['get', '/v1/chat/completions'],
      ['get', '/v1/models/a/b'],
      ['post', '/v1/models'],
      ['get', '/v1'],
      ['post', '/v1/Chat/Completions'],
      ['post', '/V1/chat/completions'],
      ['post', '/v1/chat/completions/'],
    ] as const) {
      const res = await request(app)[method](path).set('Authorization', `Bearer ${KEY}`);
      expect([method, path, res.status, res.body.error?.code]).toEqual([method, path, 404, 'not_found']);
    }
  });

  it('leaves /v1-lookalike paths to the host and works mounted under a prefix', async () => {
    const host = express();
    host.use('/api', gateway);
    host.use((_req, res) => {
      res.status(418).send('host');
    });
    const lookalike = await request(host).post('/api/v10/chat/completions').send({});
    expect(lookalike.status).toBe(418);
    const relayed = await request(host)
      .post('/api/v1/chat/completions')
      .set('Authorization', `Bearer ${KEY}`)
      .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(relayed.status).toBe(200);
    expect(mock.requests.at(-1)!.path).toBe('/v1/chat/completions');
  });

  it('refuses a body above the configured bound with 413 before auth', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${KEY}`)
      .send({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }] });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('body_too_large');
  });

  it('lists models for a key with an allow-list and an rpm of 1, without spending its quota', async () => {
    const store = new MemoryKeyStore();
    await store.createKey({
      name: 'narrow',
      hash: hashApiKey('sk-narrow-key-0001'),
      prefix: 'sk-narrow',
      models: ['gpt-4o'],
      rpm: 1,
    });
    const narrow = llmux({ upstream: `${mock.url}/v1`, auth: { store }, logger: { error: () => undefined } });
    const host = express();
    host.use(narrow);
    for (let i = 0; i < 3; i++) {
      expect((await request(host).get('/v1/models').set('x-api-key', 'sk-narrow-key-0001')).status).toBe(200);
    }
    expect((await request(host).get('/v1/models').set('x-api-key', 'sk-wrong')).status).toBe(401);
    const chat = await request(host)
      .post('/v1/chat/completions')
      .set('x-api-key', 'sk-narrow-key-0001')
      .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect(chat.status).toBe(200);
    await narrow.close();
  });

  it('requires auth to be chosen explicitly', () => {
    expect(() => llmux({ upstream: mock.url } as never)).toThrow(/auth/);
  });

  // chainFor() once matched the raw req.url while Express matches parseurl(req).pathname, so a
  // request in absolute form (RFC 9112 3.2.2: a server MUST accept it; clients behind an HTTP proxy
  // setting send it) fell through to the host (404).
  it('relays a request whose target is in absolute form, as Express routing does', async () => {
    const open = llmux({ upstream: `${mock.url}/v1`, auth: false });
    const host = express();
    host.use(open);
    const server = await listen(host);
    try {
      const body = JSON.stringify(chat());
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(server.port, '127.0.0.1');
        let out = '';
        socket.on('data', (d: Buffer) => (out += d.toString('utf8')));
        socket.on('error', reject);
        socket.on('close', () => resolve(out));
        socket.write(
          `POST ${server.url}/v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
            `Connection: close\r\n\r\n${body}`,
        );
      });
      expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
      expect(mock.requests.at(-1)?.path).toBe('/v1/chat/completions?x=1');
    } finally {
      await open.close();
      await server.close();
    }
  });

  it('records only its own routes in its tracker, not host routes mounted after it', async () => {
    const tracker = new RequestTracker();
    const open = llmux({ upstream: `${mock.url}/v1`, auth: false, tracker });
    try {
      const host = express();
      host.use(open);
      host.get('/health', (_req, res) => {
        res.json({ ok: true });
      });
      expect((await request(host).get('/health')).status).toBe(200);
      await tracker.whenRecorded();
      expect(tracker.recent().map((r) => r.route)).toEqual([]);
    } finally {
      await open.close();
    }
  });

  it('refuses a huge model name with 400, so no tracker record carries it', async () => {
    const tracker = new RequestTracker({ capacity: 10 });
    const keyed = llmux({
      upstream: `${mock.url}/v1`,
      auth: { keys: [{ id: 'k1', key: 'sk-llmux-review-0123456789abcdef' }] },
      tracker,
    });
    try {
      const host = express().use(keyed);
      const res = await request(host)
        .post('/v1/chat/completions')
        .send(chat({ model: 'm'.repeat(512 * 1024) }));
      expect(res.status).toBe(400);
      expect(res.body.error.param).toBe('model');
      await tracker.whenRecorded();
      // A ring of `capacity` records is fixed memory only if every field is bounded (route and id are).
      expect(tracker.recent(1)[0]!.model ?? '').not.toHaveLength(512 * 1024);
    } finally {
      await keyed.close();
    }
  });
});

describe('the official OpenAI SDK against the preset', () => {
  let mock: MockUpstream;
  let gateway: LlmuxRouter;
  let server: Server;
  let baseURL: string;

  beforeAll(async () => {
    mock = await createMockUpstream();
    gateway = llmux({
      upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-only'] },
      auth: { keys: [{ id: 'sdk', key: KEY }] },
      body: { maxBytes: 16 * 1024 },
    });
    const express = expressVersions[0]![1];
    const app = express();
    app.use(gateway);
    server = createServer(app);
    baseURL = `${(await listen(server)).url}/v1`;
  });
  afterAll(async () => {
    await shutdown(server, [gateway, mock], { timeoutMs: 2_000 });
  });

  const client = (apiKey = KEY) => new OpenAI({ apiKey, baseURL, maxRetries: 0 });

  it('creates a chat completion', async () => {
    const completion = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello there' }],
    });
    expect(completion.choices[0]!.message.content).toContain('tok0');
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
  });

  it('streams a chat completion chunk by chunk', async () => {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'hello there' }],
    });
    const parts: string[] = [];
    for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? '');
    expect(parts.join('')).toBe('tok0 tok1 tok2 ');
  });

  it('sees a bad key as AuthenticationError with our code', async () => {
    const err = await client('sk-wrong')
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });

  it('sees an oversized body as an APIError 413 with our code and message', async () => {
    const err = await client()
      .chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x'.repeat(32 * 1024) }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const apiError = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(413);
    expect(apiError.code).toBe('body_too_large');
    expect(apiError.message).toContain('exceeds the limit');
  });
});
