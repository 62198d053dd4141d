// Reviewer tests: each one demonstrates a defect found in the foundation review (they fail on purpose).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { passthrough } from '../lib/middleware/passthrough.js';
import { recovery } from '../lib/middleware/recovery.js';
import { streamRelay } from '../lib/middleware/stream-relay.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

async function listen(app: http.RequestListener) {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { port, close };
}

async function waitFor(condition: () => boolean, ms = 2000): Promise<boolean> {
  for (let i = 0; i < ms / 10 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  return condition();
}

describe('foundation review', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it('streamRelay: a 2xx non-JSON (empty text/plain) answer is a decode error, not a success', async () => {
    const relay = streamRelay({ upstream: `${mock.url}/v1` });
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), relay);
    mock.enqueue({ rawBody: '', headers: { 'content-type': 'text/plain' } });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    await relay.close();
    expect(res.status).toBe(502);
    expect(res.body.error?.code).toBe('upstream_decode_error');
  });

  it('passthrough: a timed-out upstream is answered 504 upstream_timeout, as documented', async () => {
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1`, timeoutMs: 200 }));
    mock.enqueue({ delayBeforeHeadersMs: 1500 });
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(504);
    expect(res.body.error?.code).toBe('upstream_timeout');
  });

  it('passthrough: the upstream stream is aborted when the client leaves mid-stream', async () => {
    mock.reset();
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1` }));
    const { port, close } = await listen(app);
    mock.enqueue({ chunks: 200, chunkDelayMs: 20 });
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
      setTimeout(() => reject(new Error('no data')), 3000).unref();
    });
    // 200 chunks x 20 ms = 4 s of stream: an abort must be seen well before that.
    const aborted = await waitFor(() => mock.requests[0]?.aborted === true, 1500);
    await close();
    expect(aborted).toBe(true);
  });

  it('passthrough: an upstream reset mid-stream ends the client response instead of leaving it open', async () => {
    mock.reset();
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1` }));
    const { port, close } = await listen(app);
    mock.enqueue({ chunks: 50, chunkDelayMs: 10, resetAfterChunks: 2 });
    const outcome = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('hung'), 2000);
      const clientReq = http.request(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            clearTimeout(timer);
            resolve('ended');
          });
          res.on('error', () => {
            clearTimeout(timer);
            resolve('errored');
          });
          res.on('close', () => {
            clearTimeout(timer);
            resolve('closed');
          });
        },
      );
      clientReq.on('error', () => {
        clearTimeout(timer);
        resolve('errored');
      });
      clientReq.end(JSON.stringify(chat({ stream: true })));
    });
    await close();
    expect(outcome).not.toBe('hung');
  });

  it('bodyLimit: a 400 invalid_encoding leaves a keep-alive connection usable for the next request', async () => {
    const app = express();
    app.post('/', bodyLimit(), (_req, res) => res.json({ ok: true }));
    const { port, close } = await listen(app);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const send = (body: Buffer, headers: http.OutgoingHttpHeaders) =>
      new Promise<number | string>((resolve) => {
        const timer = setTimeout(() => resolve('hung'), 2000);
        const req = http.request(
          {
            port,
            host: '127.0.0.1',
            method: 'POST',
            path: '/',
            agent,
            headers: { 'content-type': 'application/json', ...headers },
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              clearTimeout(timer);
              resolve(res.statusCode ?? 0);
            });
          },
        );
        req.on('error', (err) => {
          clearTimeout(timer);
          resolve(`error ${(err as NodeJS.ErrnoException).code}`);
        });
        req.end(body);
      });
    // Not gzip at all: the decoder fails on the first bytes, long before the body is in.
    const first = await send(Buffer.alloc(256 * 1024, 0x7b), { 'content-encoding': 'gzip' });
    const second = await send(Buffer.from(JSON.stringify({ model: 'm' })), {});
    agent.destroy();
    await close();
    expect(first).toBe(400);
    expect(second).toBe(200);
  });

  it('passthrough: a client sending Expect: 100-continue still has its credentials replaced', async () => {
    mock.reset();
    const app = express();
    app.get(
      '/v1/models',
      passthrough({ target: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-key-123'] } }),
    );
    const { port, close } = await listen(app);
    const status = await new Promise<number>((resolve, reject) => {
      const clientReq = http.request(
        {
          port,
          host: '127.0.0.1',
          method: 'GET',
          path: '/v1/models',
          headers: { authorization: 'Bearer sk-client-secret-abcdef', expect: '100-continue' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      clientReq.on('error', reject);
      clientReq.end();
      setTimeout(() => reject(new Error('hung')), 3000).unref();
    });
    await close();
    expect(status).toBe(200);
    expect(mock.requests[0]?.headers.authorization).toBe('Bearer sk-upstream-key-123');
  });

  it('recovery: a client error from express.json() (unsupported charset) stays a 4xx, not a logged 500', async () => {
    const logged: unknown[] = [];
    const app = express();
    app.use(express.json());
    app.post('/v1/chat/completions', bodyLimit(), (_req, res) => {
      res.json({ ok: true });
    });
    app.use(recovery({ logger: { error: (_m, fields) => logged.push(fields) } }));
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('content-type', 'application/json; charset=klingon')
      .send(JSON.stringify(chat()));
    expect(res.status).toBe(415);
    expect(logged).toHaveLength(0);
  });
});
