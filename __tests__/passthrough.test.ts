import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express5 from 'express';
import http from 'node:http';
import request from 'supertest';
import { bodyLimit, keyAuth, passthrough, UpstreamPool } from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';
import { chat, closedPort, listen, postAndLeave, waitFor, type Listening } from './support/http.js';

describe.each(expressVersions)('passthrough on %s', (_label, express) => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it('replaces the client credentials with the upstream key', async () => {
    const app = express();
    app.get(
      '/v1/models',
      keyAuth({ keys: [{ id: 'k', key: 'sk-client-0001' }] }),
      passthrough({ target: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } }),
    );
    const res = await request(app)
      .get('/v1/models')
      .set('Authorization', 'Bearer sk-client-0001')
      .set('Cookie', 'session=1');
    expect(res.status).toBe(200);
    const seen = mock.requests.at(-1)!;
    expect(seen.headers.authorization).toBe('Bearer sk-up');
    expect(seen.headers.cookie).toBeUndefined();
  });

  it('re-sends a JSON body that bodyLimit already read', async () => {
    const app = express();
    app.post('/v1/embeddings', bodyLimit(), passthrough({ target: `${mock.url}/v1` }));
    const res = await request(app)
      .post('/v1/embeddings')
      .send({ model: 'e', input: ['one', 'two', 'three'] });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(3);
    expect(mock.requests.at(-1)!.body).toEqual({ model: 'e', input: ['one', 'two', 'three'] });
  });

  it('answers an unreachable upstream with 502 in the OpenAI shape', async () => {
    const app = express();
    app.get('/v1/models', passthrough({ target: `http://127.0.0.1:${await closedPort()}/v1` }));
    const res = await request(app).get('/v1/models');
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_unreachable');
    expect(res.body.error.type).toBe('upstream_error');
  });

  it('throws a TypeError naming a bad option', () => {
    expect(() => passthrough({ target: 'ftp://x' })).toThrow(/url/);
    expect(() => passthrough({ target: mock.url, timeoutMs: -1 })).toThrow(/timeoutMs/);
  });
});

describe('passthrough timeouts, streams and Expect: 100-continue', () => {
  // A mock and a server per test: a stream one test leaves running cannot reach the next.
  let mock: MockUpstream;
  let server: Listening | undefined;
  beforeEach(async () => {
    mock = await createMockUpstream();
    server = undefined;
  });
  afterEach(async () => {
    await server?.close();
    await mock.close();
  });

  function serve(mount: (app: ReturnType<typeof express5>) => void): Promise<Listening> {
    const app = express5();
    mount(app);
    return listen(app).then((listening) => (server = listening));
  }

  it('answers a timed-out upstream with 504 upstream_timeout, as documented', async () => {
    const app = express5();
    app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1`, timeoutMs: 200 }));
    mock.enqueue({ delayBeforeHeadersMs: 60_000 }); // silent until the passthrough gives up
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(504);
    expect(res.body.error?.code).toBe('upstream_timeout');
  });

  it('aborts the upstream stream when the client leaves mid-stream', async () => {
    const { port } = await serve((app) =>
      app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1` })),
    );
    mock.enqueue({ chunks: 200, chunkDelayMs: 20 });
    const settled = mock.waitForSettled(1);
    await postAndLeave(port, chat({ stream: true }));
    // 200 chunks x 20 ms = 4 s of stream: settled before its end and not completed, it was aborted.
    const [record] = await settled;
    expect(record!.aborted).toBe(true);
    expect(record!.completed).toBe(false);
  });

  it('leaves the upstream healthy when clients leave, before the answer or in the middle of it', async () => {
    const pool = new UpstreamPool({ upstreams: [{ url: `${mock.url}/v1`, apiKey: 'sk-up', name: 'only' }] });
    const { port } = await serve((app) =>
      app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: pool })),
    );
    // Three clients leave mid-stream, three before the upstream answers at all.
    for (let i = 0; i < 3; i++) {
      mock.enqueue({ chunks: 200, chunkDelayMs: 20 });
      const settled = mock.waitForSettled(1);
      await postAndLeave(port, chat({ stream: true }));
      expect((await settled)[0]!.aborted).toBe(true);
    }
    for (let i = 0; i < 3; i++) {
      mock.enqueue({ delayBeforeHeadersMs: 60_000 });
      const settled = mock.waitForSettled(1);
      const leaving = http.request({
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/v1/chat/completions',
        agent: false,
        headers: { 'content-type': 'application/json' },
      });
      leaving.on('error', () => {});
      leaving.end(JSON.stringify(chat()));
      await waitFor(() => mock.requests.length === 4 + i, { what: 'the request upstream' });
      leaving.destroy();
      expect((await settled)[0]!.aborted).toBe(true);
    }
    // Those were the clients' choices: nothing cooled, and the next client is served.
    expect(pool.status().map((s) => s.state)).toEqual(['healthy']);
    const res = await request(server!.url).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
  });

  it('ends the client response when the upstream resets mid-stream instead of leaving it open', async () => {
    const { port } = await serve((app) =>
      app.post('/v1/chat/completions', bodyLimit(), passthrough({ target: `${mock.url}/v1` })),
    );
    mock.enqueue({ chunks: 50, chunkDelayMs: 10, resetAfterChunks: 2 });
    const outcome = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('hung'), 2000);
      const finish = (how: string) => {
        clearTimeout(timer);
        resolve(how);
      };
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
          res.on('end', () => finish('ended'));
          res.on('error', () => finish('errored'));
          res.on('close', () => finish('closed'));
        },
      );
      clientReq.on('error', () => finish('errored'));
      clientReq.end(JSON.stringify(chat({ stream: true })));
    });
    expect(outcome).not.toBe('hung');
  });

  it('replaces the credentials of a client sending Expect: 100-continue', async () => {
    const { port } = await serve((app) =>
      app.get(
        '/v1/models',
        passthrough({ target: { url: `${mock.url}/v1`, apiKeys: ['sk-upstream-key-123'] } }),
      ),
    );
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
    expect(status).toBe(200);
    expect(mock.requests[0]?.headers.authorization).toBe('Bearer sk-upstream-key-123');
  });
});
