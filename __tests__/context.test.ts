import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import request from 'supertest';
import { getContext, isSaneRequestId, requestContext } from '../lib/index.js';
import { expressVersions } from './support/express-versions.js';
import { fuzzRuns } from './support/fuzz.js';

describe('isSaneRequestId', () => {
  it.each([
    ['abc-123_x.y', true],
    ['a'.repeat(128), true],
    ['a'.repeat(129), false],
    ['', false],
    ['has space', false],
    ['new\nline', false],
    ['<script>', false],
  ])('%j is %s', (id, sane) => {
    expect(isSaneRequestId(id)).toBe(sane);
  });

  it('never passes a forbidden character', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (id) => {
        if (isSaneRequestId(id)) expect(id).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
      }),
      { numRuns: fuzzRuns(1000) },
    );
  });
});

describe.each(expressVersions)('requestContext on %s', (_label, express) => {
  const app = express();
  app.use(requestContext());
  app.get('/id', (_req, res) => {
    res.json({ id: getContext(res)?.id });
  });

  it('keeps a sane client request id and echoes it', async () => {
    const res = await request(app).get('/id').set('x-request-id', 'client-id.1');
    expect(res.headers['x-request-id']).toBe('client-id.1');
    expect(res.body.id).toBe('client-id.1');
  });

  it('replaces an unsafe request id with a generated one', async () => {
    const res = await request(app).get('/id').set('x-request-id', 'bad id; drop table');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.id).toBe(res.headers['x-request-id']);
  });
});
