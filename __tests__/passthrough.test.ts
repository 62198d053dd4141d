import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { bodyLimit, keyAuth, passthrough } from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { expressVersions } from './support/express-versions.js';

/** A port nothing listens on: bound, then closed. */
async function deadPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

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
    app.get('/v1/models', passthrough({ target: `http://127.0.0.1:${await deadPort()}/v1` }));
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
