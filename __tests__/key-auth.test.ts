// keyAuth against real Express apps (5 and 4): accepted headers, one indistinguishable 401 for
// every failure, hashed and peppered keys, construction checks, and a header reader that never throws.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import type { Request, Response } from 'express';
import { getContext } from '../lib/context.js';
import { hashApiKey, readPresentedKey } from '../lib/keys/hash.js';
import { keyAuth, type KeyAuthOptions } from '../lib/middleware/key-auth.js';
import { expressVersions } from './support/express-versions.js';

type ExpressFactory = (typeof expressVersions)[number][1];

const TEAM_KEY = 'sk-llmux-team-0123456789abcdef';
const OTHER_KEY = 'sk-llmux-other-fedcba9876543210';
const PEPPER = 'pepper-for-tests';
const numRuns = Number(process.env.FUZZ_RUNS ?? 25);

/** The next handler: shows the key identity keyAuth recorded. */
function whoami(_req: Request, res: Response): void {
  res.json({ keyId: getContext(res)?.keyId ?? null });
}

function appWith(express: ExpressFactory, options: KeyAuthOptions) {
  const app = express();
  app.get('/v1/models', keyAuth({ ...options, limitFailedAuth: false }), whoami);
  return app;
}

const plainKeys: KeyAuthOptions = {
  keys: [
    { id: 'team-a', key: TEAM_KEY },
    { id: 'team-b', key: OTHER_KEY },
  ],
};

describe.each(expressVersions)('keyAuth on %s', (_label, express) => {
  describe('accepted keys', () => {
    it.each([
      ['Authorization: Bearer', { authorization: `Bearer ${TEAM_KEY}` }],
      ['Authorization: bearer (lower case)', { authorization: `bearer ${TEAM_KEY}` }],
      ['Authorization: BEARER (upper case)', { authorization: `BEARER ${TEAM_KEY}` }],
      ['Authorization: Bearer with extra spaces', { authorization: `Bearer    ${TEAM_KEY}` }],
      ['x-api-key', { 'x-api-key': TEAM_KEY }],
      [
        'x-api-key next to a non-Bearer Authorization',
        { authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': TEAM_KEY },
      ],
    ])('accepts the key in %s and records its id', async (_where, headers) => {
      const res = await request(appWith(express, plainKeys)).get('/v1/models').set(headers);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'team-a' });
    });

    it('records the id of whichever configured key was presented', async () => {
      const res = await request(appWith(express, plainKeys))
        .get('/v1/models')
        .set('Authorization', `Bearer ${OTHER_KEY}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'team-b' });
    });

    it('accepts a key configured only by its SHA-256 hash', async () => {
      const app = appWith(express, { keys: [{ id: 'hashed', hash: hashApiKey(TEAM_KEY) }] });
      const res = await request(app).get('/v1/models').set('Authorization', `Bearer ${TEAM_KEY}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'hashed' });
    });

    it('accepts a key configured by its peppered hash when the same pepper is set', async () => {
      const app = appWith(express, {
        keys: [{ id: 'peppered', hash: hashApiKey(TEAM_KEY, PEPPER) }],
        pepper: PEPPER,
      });
      const res = await request(app).get('/v1/models').set('x-api-key', TEAM_KEY);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'peppered' });
    });

    it('accepts a plaintext key when a pepper is set', async () => {
      const app = appWith(express, { keys: [{ id: 'plain', key: TEAM_KEY }], pepper: PEPPER });
      const res = await request(app).get('/v1/models').set('Authorization', `Bearer ${TEAM_KEY}`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'plain' });
    });

    it('refuses a key stored as a plain hash once a pepper is set', async () => {
      const app = appWith(express, {
        keys: [{ id: 'unpeppered', hash: hashApiKey(TEAM_KEY) }],
        pepper: PEPPER,
      });
      const res = await request(app).get('/v1/models').set('Authorization', `Bearer ${TEAM_KEY}`);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_api_key');
    });
  });

  describe('refused keys', () => {
    const failures: [string, Record<string, string>][] = [
      ['no credentials', {}],
      ['an unknown Bearer key', { authorization: 'Bearer sk-llmux-unknown-000000000000' }],
      ['a Bearer key one character short', { authorization: `Bearer ${TEAM_KEY.slice(0, -1)}` }],
      ['a Bearer key with a character too many', { authorization: `Bearer ${TEAM_KEY}x` }],
      ['the key in the wrong case', { authorization: `Bearer ${TEAM_KEY.toUpperCase()}` }],
      ['an unknown x-api-key', { 'x-api-key': 'sk-llmux-unknown-000000000000' }],
      ['Bearer without a key', { authorization: 'Bearer' }],
      ['Bearer followed by spaces only', { authorization: 'Bearer    ' }],
      ['the key without a scheme', { authorization: TEAM_KEY }],
      ['the key under another scheme', { authorization: `Token ${TEAM_KEY}` }],
      ['Basic credentials', { authorization: 'Basic dXNlcjpwYXNz' }],
      ['the stored hash presented as the key', { authorization: `Bearer ${hashApiKey(TEAM_KEY)}` }],
      [
        'a wrong Bearer key next to a right x-api-key',
        { authorization: 'Bearer sk-wrong-0000', 'x-api-key': TEAM_KEY },
      ],
    ];

    it.each(failures)(
      'answers %s with 401 invalid_api_key in the OpenAI error shape',
      async (_what, headers) => {
        const res = await request(appWith(express, plainKeys)).get('/v1/models').set(headers);
        expect(res.status).toBe(401);
        expect(res.body).toEqual({
          error: {
            message: expect.any(String),
            type: 'authentication_error',
            code: 'invalid_api_key',
            param: null,
          },
        });
      },
    );

    it('answers every kind of failure with the same 401 body byte for byte', async () => {
      const app = appWith(express, plainKeys);
      const bodies = new Set<string>();
      for (const [, headers] of failures) {
        const res = await request(app).get('/v1/models').set(headers);
        bodies.add(res.text);
      }
      expect(bodies.size).toBe(1);
    });

    it('never calls the next handler for a refused key', async () => {
      let nextCalled = false;
      const app = express();
      app.get('/v1/models', keyAuth({ ...plainKeys, limitFailedAuth: false }), (_req, res) => {
        nextCalled = true;
        res.end();
      });
      const res = await request(app).get('/v1/models').set('Authorization', 'Bearer sk-wrong-0000000000');
      expect(res.status).toBe(401);
      expect(nextCalled).toBe(false);
    });

    it('echoes the request id on a 401', async () => {
      const res = await request(appWith(express, plainKeys))
        .get('/v1/models')
        .set('x-request-id', 'auth-req-1');
      expect(res.status).toBe(401);
      expect(res.headers['x-request-id']).toBe('auth-req-1');
    });
  });

  describe('key length bound', () => {
    const longest = `sk-${'a'.repeat(509)}`;
    const tooLong = `sk-${'a'.repeat(510)}`;
    const options: KeyAuthOptions = {
      keys: [
        { id: 'longest', key: longest },
        { id: 'too-long', key: tooLong },
      ],
    };

    it.each([
      ['Authorization: Bearer', (key: string) => ({ authorization: `Bearer ${key}` })],
      ['x-api-key', (key: string) => ({ 'x-api-key': key })],
    ])('accepts a 512-character key in %s', async (_where, headersFor) => {
      const res = await request(appWith(express, options)).get('/v1/models').set(headersFor(longest));
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ keyId: 'longest' });
    });

    it('refuses a 513-character key in x-api-key unread', async () => {
      const res = await request(appWith(express, options)).get('/v1/models').set('x-api-key', tooLong);
      expect(res.status).toBe(401);
    });

    // hash.ts admits an Authorization header of up to 520 characters, and "Bearer " is 7: a
    // 513-character key still gets through, against the documented 512 bound.
    it('refuses a 513-character key in Authorization: Bearer unread', async () => {
      const res = await request(appWith(express, options))
        .get('/v1/models')
        .set('Authorization', `Bearer ${tooLong}`);
      expect(res.status).toBe(401);
    });
  });
});

describe('keyAuth options', () => {
  it.each([
    ['no options', undefined],
    ['null', null],
    ['no keys', {}],
    ['keys that are not an array', { keys: 'sk-1' }],
    ['a key entry that is null', { keys: [null] }],
    ['a key without an id', { keys: [{ key: TEAM_KEY }] }],
    ['a key with an empty id', { keys: [{ id: '', key: TEAM_KEY }] }],
    ['a key with a non-string id', { keys: [{ id: 7, key: TEAM_KEY }] }],
    ['a key with neither key nor hash', { keys: [{ id: 'a' }] }],
    ['an empty key', { keys: [{ id: 'a', key: '' }] }],
    ['a key that is not a string', { keys: [{ id: 'a', key: 12345 }] }],
    ['a hash that is not hex', { keys: [{ id: 'a', hash: 'z'.repeat(64) }] }],
    ['a hash of the wrong length', { keys: [{ id: 'a', hash: hashApiKey(TEAM_KEY).slice(1) }] }],
    ['a hash in upper case', { keys: [{ id: 'a', hash: hashApiKey(TEAM_KEY).toUpperCase() }] }],
  ])('throws a TypeError for %s', (_what, options) => {
    expect(() => keyAuth(options as unknown as KeyAuthOptions)).toThrow(TypeError);
  });

  it('names the id of the key entry at fault', () => {
    expect(() => keyAuth({ keys: [{ id: 'broken-entry', hash: 'nope' }] })).toThrow('broken-entry');
  });

  it('builds with an empty key list', () => {
    expect(typeof keyAuth({ keys: [] })).toBe('function');
  });

  // The pepper is only used per request (createHmac), so with hash-only keys a bad pepper is not
  // noticed at construction and every request presenting a key then fails with a 500.
  it('throws a TypeError for a pepper that is not a string', () => {
    expect(() =>
      keyAuth({ keys: [{ id: 'a', hash: hashApiKey(TEAM_KEY) }], pepper: 42 as unknown as string }),
    ).toThrow(TypeError);
  });
});

describe('readPresentedKey', () => {
  it.each([
    [{ authorization: `Bearer ${TEAM_KEY}` }, TEAM_KEY],
    [{ authorization: `bEaReR ${TEAM_KEY}` }, TEAM_KEY],
    [{ authorization: `Bearer  ${TEAM_KEY}  ` }, TEAM_KEY],
    [{ 'x-api-key': TEAM_KEY }, TEAM_KEY],
    [{ 'x-api-key': ` ${TEAM_KEY} ` }, TEAM_KEY],
    [{ authorization: `Bearer ${TEAM_KEY}`, 'x-api-key': OTHER_KEY }, TEAM_KEY],
    [{ authorization: 'Basic abc', 'x-api-key': OTHER_KEY }, OTHER_KEY],
    [{ authorization: 'Bearer ', 'x-api-key': OTHER_KEY }, OTHER_KEY],
    [{ authorization: 'Bearer    ' }, undefined],
    [{ authorization: 'Bearer' }, undefined],
    [{ authorization: [`Bearer ${TEAM_KEY}`] }, undefined],
    [{ 'x-api-key': [TEAM_KEY, OTHER_KEY] }, undefined],
    [{ 'x-api-key': '' }, undefined],
    [{}, undefined],
  ])('reads %j as %j', (headers, expected) => {
    expect(readPresentedKey(headers)).toBe(expected);
  });

  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 700 }),
    fc.string({
      unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
      maxLength: 40,
    }),
  );
  const headerValue = fc.option(
    fc.oneof(
      text,
      text.map((rest) => `Bearer ${rest}`),
      text.map((rest) => `bearer${rest}`),
      fc.array(text, { maxLength: 3 }),
    ),
    { nil: undefined },
  );
  const headers = fc.record({ authorization: headerValue, 'x-api-key': headerValue });

  it('never throws and returns a string or undefined, whatever the headers hold', () => {
    fc.assert(
      fc.property(headers, (input) => {
        const key = readPresentedKey(input);
        expect(key === undefined || typeof key === 'string').toBe(true);
      }),
      { numRuns: numRuns * 20 },
    );
  });

  it('lets keyAuth answer 401 or pass, never throw, whatever the headers hold', async () => {
    const middleware = keyAuth({
      keys: [{ id: 'team-a', key: TEAM_KEY }],
      pepper: PEPPER,
      limitFailedAuth: false,
    });
    await fc.assert(
      fc.asyncProperty(headers, async (input) => {
        const answer = { status: 0, ended: false, nextCalled: false };
        await new Promise<void>((resolve) => {
          const res = {
            headersSent: false,
            destroyed: false,
            closed: false,
            set statusCode(status: number) {
              answer.status = status;
            },
            setHeader() {},
            once() {},
            end() {
              answer.ended = true;
              resolve();
            },
          };
          middleware(
            { headers: input, socket: {} } as unknown as IncomingMessage,
            res as unknown as ServerResponse,
            () => {
              answer.nextCalled = true;
              resolve();
            },
          );
        });
        expect(answer.nextCalled || (answer.ended && answer.status === 401)).toBe(true);
      }),
      { numRuns: numRuns * 20 },
    );
  });
});
