// bodyLimit against real Express apps (5 and 4): byte counting as the body arrives, refusals in the
// OpenAI error shape, decompression under the bound, and the pass-through mode for uploads.
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import request from 'supertest';
import type { Request, Response } from 'express';
import { getContext } from '../lib/context.js';
import { bodyLimit, type BodyLimitOptions } from '../lib/middleware/body-limit.js';
import { expressVersions } from './support/express-versions.js';
import { listen } from './support/http.js';

type ExpressFactory = (typeof expressVersions)[number][1];
type App = ReturnType<ExpressFactory>;

const KIB = 1024;
const MIB = 1024 * KIB;

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface RawRequestOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders;
  /** Written one by one, respecting backpressure. */
  chunks?: readonly Buffer[];
  /** End the request after the chunks. Default true. */
  end?: boolean;
}

/** How long a test waits for an answer before calling it a hang (lib bugs must fail fast). */
const ANSWER_TIMEOUT_MS = 2000;

/**
 * One request over a fresh connection, written chunk by chunk. A server that answers early and
 * closes makes later writes fail with EPIPE/ECONNRESET: those are ignored once the answer is in.
 */
function rawRequest(port: number, options: RawRequestOptions): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    let answered = false;
    const req = http.request({
      timeout: ANSWER_TIMEOUT_MS,
      host: '127.0.0.1',
      port,
      method: options.method ?? 'POST',
      path: options.path ?? '/',
      headers: options.headers,
      agent: false,
    });
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => {
        req.destroy();
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString('utf8'),
        });
      });
      res.on('error', reject);
    });
    req.setNoDelay(true);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const writeSide = err.code === 'EPIPE' || err.code === 'ECONNRESET';
      if (!(answered && writeSide)) reject(err);
    });
    const chunks = options.chunks ?? [];
    let index = 0;
    const writeMore = (): void => {
      while (index < chunks.length) {
        if (answered || req.destroyed) return;
        const chunk = chunks[index++]!;
        if (!req.write(chunk)) {
          req.once('drain', writeMore);
          return;
        }
      }
      if (answered) return;
      if (options.end === false) req.flushHeaders();
      else req.end();
    };
    writeMore();
  });
}

/** POSTs `body` as JSON with a Content-Length to a fresh server for `app`. */
async function postTo(app: App, body: Buffer, headers: http.OutgoingHttpHeaders = {}): Promise<RawResponse> {
  const server = await listen(app);
  try {
    return await rawRequest(server.port, {
      headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers },
      chunks: [body],
    });
  } finally {
    await server.close();
  }
}

/** `total` bytes of `fill` split into `chunkBytes` pieces. */
function chunked(total: number, chunkBytes: number, fill = 0x20): Buffer[] {
  const chunks: Buffer[] = [];
  for (let sent = 0; sent < total; sent += chunkBytes)
    chunks.push(Buffer.alloc(Math.min(chunkBytes, total - sent), fill));
  return chunks;
}

/** The next handler: shows what it was handed by bodyLimit. */
function echo(req: Request, res: Response): void {
  const ctx = getContext(res)!;
  res.json({
    reqBody: req.body ?? null,
    ctxBody: ctx.body ?? null,
    sameObject: req.body === ctx.body,
    model: ctx.model ?? null,
    stream: ctx.stream,
    rawBytes: ctx.rawBody?.length ?? null,
  });
}

function appWith(express: ExpressFactory, options: BodyLimitOptions = {}): App {
  const app = express();
  app.all('/', bodyLimit(options), echo);
  return app;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe.each(expressVersions)('bodyLimit on %s', (_label, express) => {
  describe('JSON bodies', () => {
    it('parses the body into the context and req.body, the same object for both', async () => {
      const body = { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] };
      const res = await request(appWith(express)).post('/').send(body);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        reqBody: body,
        ctxBody: body,
        sameObject: true,
        model: 'gpt-4o-mini',
        stream: true,
        rawBytes: Buffer.byteLength(JSON.stringify(body)),
      });
    });

    it.each([
      [{ model: 'm' }, 'm', false],
      [{ model: 'm', stream: false }, 'm', false],
      [{ model: 42, stream: true }, null, true],
      [{}, null, false],
    ])('reads model and stream from %j as %j and %j', async (body, model, stream) => {
      const res = await request(appWith(express)).post('/').send(body);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ model, stream });
    });

    it('lets a second bodyLimit on the same request reuse the parsed body instead of reading again', async () => {
      const app = express();
      app.post('/', bodyLimit(), bodyLimit(), echo);
      const res = await postTo(app, json({ model: 'm', stream: true }));
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ model: 'm', stream: true });
    });

    it.each([
      'application/json',
      'application/json; charset=utf-8',
      'Application/JSON',
      'application/vnd.api+json',
    ])('accepts content type %s', async (type) => {
      const res = await request(appWith(express)).post('/').set('Content-Type', type).send('{"model":"m"}');
      expect(res.status).toBe(200);
      expect(res.body.model).toBe('m');
    });

    it.each(['{', '{"model":}', '{"model":"m"', 'model=m', '{"a":1}}', '\u00ff'])(
      'refuses %j with 400 invalid_json',
      async (text) => {
        const res = await request(appWith(express))
          .post('/')
          .set('Content-Type', 'application/json')
          .send(text);
        expect(res.status).toBe(400);
        expect(res.body.error).toEqual({
          message: expect.any(String),
          type: 'invalid_request_error',
          code: 'invalid_json',
          param: null,
        });
      },
    );

    it.each(['[]', '[{"model":"m"}]', '1', '"text"', 'null', 'true'])(
      'refuses the JSON value %s that is not an object with 400 invalid_request',
      async (text) => {
        const res = await request(appWith(express))
          .post('/')
          .set('Content-Type', 'application/json')
          .send(text);
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('invalid_request');
      },
    );

    it.each([
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonp',
    ])('refuses content type %s with 415 unsupported_media_type', async (type) => {
      const res = await request(appWith(express)).post('/').set('Content-Type', type).send('{"model":"m"}');
      expect(res.status).toBe(415);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'unsupported_media_type' });
    });

    it('refuses a body without a content type with 415 unsupported_media_type', async () => {
      const server = await listen(appWith(express));
      try {
        const res = await rawRequest(server.port, {
          headers: { 'content-length': '13' },
          chunks: [Buffer.from('{"model":"m"}')],
        });
        expect(res.status).toBe(415);
        expect(JSON.parse(res.body).error.code).toBe('unsupported_media_type');
      } finally {
        await server.close();
      }
    });

    it('passes a GET without a body untouched', async () => {
      const res = await request(appWith(express)).get('/');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        reqBody: null,
        ctxBody: null,
        model: null,
        stream: false,
        rawBytes: null,
      });
    });

    it('passes a POST with Content-Length 0 untouched', async () => {
      const res = await request(appWith(express)).post('/').set('Content-Type', 'application/json').send('');
      expect(res.status).toBe(200);
      expect(res.body.ctxBody).toBeNull();
    });
  });

  describe('bodies the host already parsed', () => {
    // Express 5's express.json() is body-parser 2, which no longer sets `req._body`: bodyLimit
    // then reads the already drained stream and the request never gets an answer.
    it('uses the object express.json() parsed before it', async () => {
      const app = express();
      app.use(express.json());
      app.post('/', bodyLimit(), echo);
      const res = await postTo(app, json({ model: 'm', stream: true }));
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({
        ctxBody: { model: 'm', stream: true },
        model: 'm',
        stream: true,
      });
    });

    it('refuses an array express.json() parsed before it with 400 invalid_request', async () => {
      const app = express();
      app.use(express.json());
      app.post('/', bodyLimit(), echo);
      const res = await postTo(app, json([{ model: 'm' }]));
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe('invalid_request');
    });
  });

  describe('the size bound', () => {
    it.each([
      [1000, 200],
      [1001, 413],
    ])('with a 1000-byte limit answers a %i-byte body with %i', async (bytes, status) => {
      const body = `{"p":"${'a'.repeat(bytes - 8)}"}`;
      const res = await request(appWith(express, { maxBytes: 1000 }))
        .post('/')
        .set('Content-Type', 'application/json')
        .send(body);
      expect(res.status).toBe(status);
    });

    it('refuses a declared Content-Length over the limit with 413 before the body is sent', async () => {
      const server = await listen(appWith(express, { maxBytes: MIB }));
      try {
        // Only 1 KiB of the declared 10 MiB is ever written: the answer cannot wait for the rest.
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/json', 'content-length': String(10 * MIB) },
          chunks: [Buffer.alloc(KIB, 0x20)],
          end: false,
        });
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body)).toEqual({
          error: {
            message: expect.any(String),
            type: 'invalid_request_error',
            code: 'body_too_large',
            param: null,
          },
        });
      } finally {
        await server.close();
      }
    });

    it('answers a 413 with Connection: close', async () => {
      const server = await listen(appWith(express, { maxBytes: MIB }));
      try {
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/json', 'content-length': String(2 * MIB) },
          chunks: [Buffer.alloc(KIB, 0x20)],
          end: false,
        });
        expect(res.status).toBe(413);
        expect(res.headers.connection).toBe('close');
      } finally {
        await server.close();
      }
    });

    it('refuses a chunked body over the limit with 413 after reading little more than the limit', async () => {
      const app = express();
      let socketBytesRead = -1;
      let nextCalled = false;
      app.use((req, res, next) => {
        res.on('close', () => {
          socketBytesRead = req.socket.bytesRead;
        });
        next();
      });
      app.post('/', bodyLimit({ maxBytes: MIB }), (_req, res) => {
        nextCalled = true;
        res.end();
      });
      const server = await listen(app);
      try {
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
          chunks: chunked(10 * MIB, 64 * KIB),
        });
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body).error.code).toBe('body_too_large');
        expect(res.headers.connection).toBe('close');
        await server.close();
        expect(nextCalled).toBe(false);
        expect(socketBytesRead).toBeGreaterThan(MIB);
        expect(socketBytesRead).toBeLessThan(3 * MIB);
      } finally {
        await server.close();
      }
    });

    it('counts a chunked body under the limit in full and accepts it', async () => {
      const server = await listen(appWith(express, { maxBytes: MIB }));
      try {
        const padding = 'a'.repeat(MIB - 100);
        const body = json({ model: 'm', padding });
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
          chunks: [body.subarray(0, 1000), body.subarray(1000, 500_000), body.subarray(500_000)],
        });
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body).rawBytes).toBe(body.length);
      } finally {
        await server.close();
      }
    });
  });

  describe('compressed bodies', () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello '.repeat(100) }] };

    it.each([
      ['gzip', gzipSync],
      ['x-gzip', gzipSync],
      [' GZIP ', gzipSync],
      ['deflate', deflateSync],
      ['br', brotliCompressSync],
    ] as [string, (input: Buffer) => Buffer][])(
      'accepts and parses a body sent with Content-Encoding %j',
      async (encoding, compress) => {
        const res = await postTo(appWith(express, { maxBytes: MIB }), compress(json(body)), {
          'content-encoding': encoding,
        });
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body).ctxBody).toEqual(body);
      },
    );

    it('refuses a gzip bomb that inflates past the limit with 413', async () => {
      const bomb = gzipSync(
        Buffer.concat([Buffer.from('{"p":"'), Buffer.alloc(20 * MIB, 0x61), Buffer.from('"}')]),
      );
      expect(bomb.length).toBeLessThan(MIB);
      const res = await postTo(appWith(express, { maxBytes: MIB }), bomb, { 'content-encoding': 'gzip' });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body).error.code).toBe('body_too_large');
    });

    it('applies the limit to the inflated size, not the compressed size', async () => {
      const compressed = gzipSync(json({ model: 'm', padding: 'a'.repeat(3000) }));
      expect(compressed.length).toBeLessThan(1000);
      const res = await postTo(appWith(express, { maxBytes: 1000 }), compressed, {
        'content-encoding': 'gzip',
      });
      expect(res.status).toBe(413);
    });

    it.each(['compress', 'zstd', 'gzip, br', 'identity-ish'])(
      'refuses Content-Encoding %j with 415 unsupported_encoding',
      async (encoding) => {
        const res = await postTo(appWith(express), json({ model: 'm' }), { 'content-encoding': encoding });
        expect(res.status).toBe(415);
        expect(JSON.parse(res.body).error.code).toBe('unsupported_encoding');
      },
    );

    it('refuses a gzip body with 415 unsupported_encoding when decompress is false', async () => {
      const res = await postTo(appWith(express, { decompress: false }), gzipSync(json({ model: 'm' })), {
        'content-encoding': 'gzip',
      });
      expect(res.status).toBe(415);
      expect(JSON.parse(res.body).error.code).toBe('unsupported_encoding');
    });

    it('refuses a large body that is not gzip with 400 invalid_encoding', async () => {
      const res = await postTo(appWith(express), Buffer.alloc(512 * KIB, 0x7b), {
        'content-encoding': 'gzip',
      });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe('invalid_encoding');
    });

    it('leaves a keep-alive connection usable for the next request after a 400 invalid_encoding', async () => {
      const app = express();
      app.post('/', bodyLimit(), (_req, res) => res.json({ ok: true }));
      const server = await listen(app);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const send = (body: Buffer, headers: http.OutgoingHttpHeaders) =>
        new Promise<number | string>((resolve) => {
          const timer = setTimeout(() => resolve('hung'), ANSWER_TIMEOUT_MS);
          const req = http.request(
            {
              port: server.port,
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
      try {
        // Not gzip at all: the decoder fails on the first bytes, long before the body is in.
        const first = await send(Buffer.alloc(256 * KIB, 0x7b), { 'content-encoding': 'gzip' });
        const second = await send(json({ model: 'm' }), {});
        expect(first).toBe(400);
        expect(second).toBe(200);
      } finally {
        agent.destroy();
        await server.close();
      }
    });

    // read-body.ts treats a decoder error as a client abort when `req.destroyed` is already true,
    // which it is once a small body has fully arrived: no answer is ever sent.
    it.each([
      ['a small body that is not gzip', json({ model: 'm' })],
      ['a truncated gzip body', gzipSync(json({ model: 'm', padding: 'x'.repeat(200) })).subarray(0, 20)],
    ])('refuses %s with 400 invalid_encoding', async (_what, payload) => {
      const res = await postTo(appWith(express), payload, { 'content-encoding': 'gzip' });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe('invalid_encoding');
    });
  });

  describe("parse: 'none'", () => {
    it('refuses a chunked body with 411 length_required', async () => {
      const server = await listen(appWith(express, { parse: 'none', maxBytes: MIB }));
      try {
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
          chunks: [Buffer.from('abc')],
        });
        expect(res.status).toBe(411);
        expect(JSON.parse(res.body).error.code).toBe('length_required');
      } finally {
        await server.close();
      }
    });

    it('refuses a Content-Length over the limit with 413 before the body is sent', async () => {
      const server = await listen(appWith(express, { parse: 'none', maxBytes: MIB }));
      try {
        const res = await rawRequest(server.port, {
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(10 * MIB) },
          chunks: [Buffer.alloc(KIB)],
          end: false,
        });
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body).error.code).toBe('body_too_large');
        expect(res.headers.connection).toBe('close');
      } finally {
        await server.close();
      }
    });

    it('passes a small body through unread for the next handler', async () => {
      const app = express();
      app.post('/', bodyLimit({ parse: 'none', maxBytes: MIB }), (req, res) => {
        const parts: Buffer[] = [];
        req.on('data', (chunk: Buffer) => parts.push(chunk));
        req.on('end', () => {
          res.json({
            received: Buffer.concat(parts).toString('utf8'),
            reqBody: req.body ?? null,
            ctxBody: getContext(res)?.body ?? null,
          });
        });
      });
      const res = await request(app).post('/').set('Content-Type', 'text/plain').send('raw upload bytes');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ received: 'raw upload bytes', reqBody: null, ctxBody: null });
    });
  });

  describe('a client that leaves mid-body', () => {
    it.each([
      ['identity', {}, Buffer.from('{"model":"m","padding":"')],
      ['gzip', { 'content-encoding': 'gzip' }, gzipSync(randomBytes(64 * KIB)).subarray(0, 2000)],
    ])(
      'leaves no listener on the request and never calls the next handler (%s body)',
      async (_encoding, extraHeaders, partial) => {
        const app = express();
        let nextCalled = false;
        let resolveStarted!: () => void;
        const started = new Promise<void>((resolve) => (resolveStarted = resolve));
        let resolveClosed!: (counts: {
          before: Record<string, number>;
          after: Record<string, number>;
        }) => void;
        const closed = new Promise<{ before: Record<string, number>; after: Record<string, number> }>(
          (resolve) => (resolveClosed = resolve),
        );
        const listenerCounts = (req: http.IncomingMessage) =>
          Object.fromEntries(req.eventNames().map((name) => [String(name), req.listenerCount(name)]));
        app.use((req, _res, next) => {
          const before = listenerCounts(req);
          req.once('close', () => setImmediate(() => resolveClosed({ before, after: listenerCounts(req) })));
          next();
          resolveStarted();
        });
        app.post('/', bodyLimit(), (_req, res) => {
          nextCalled = true;
          res.end();
        });
        const server = await listen(app);
        try {
          const client = http.request({
            host: '127.0.0.1',
            port: server.port,
            method: 'POST',
            path: '/',
            agent: false,
            headers: { 'content-type': 'application/json', 'content-length': '100000', ...extraHeaders },
          });
          client.on('error', () => {});
          client.write(partial);
          await started;
          client.destroy();
          const { before, after } = await closed;
          expect(after).toEqual(before);
          expect(nextCalled).toBe(false);
        } finally {
          await server.close();
        }
      },
    );
  });

  describe('property: accepted exactly when the body fits', () => {
    const limit = 600;
    const numRuns = Number(process.env.FUZZ_RUNS ?? 25);
    // `{"s":"","p":""}` is 15 bytes: padding of limit-15 makes a body of exactly the limit.
    const exactlyLimit = { text: '', pad: limit - 15, cuts: [1, 7] };
    const oneOver = { text: '', pad: limit - 14, cuts: [300] };

    it('accepts a body sent in any chunking iff its byte length is at most maxBytes', async () => {
      const server = await listen(appWith(express, { maxBytes: limit }));
      try {
        await fc.assert(
          fc.asyncProperty(
            fc.record({
              text: fc.string({ unit: 'binary', maxLength: 200 }),
              pad: fc.integer({ min: 0, max: 2 * limit }),
              cuts: fc.array(fc.nat({ max: 4 * limit }), { maxLength: 8 }),
            }),
            async ({ text, pad, cuts }) => {
              const value = { s: text, p: 'a'.repeat(pad) };
              const body = json(value);
              const points = [...new Set(cuts.map((cut) => cut % (body.length + 1)))].sort((a, b) => a - b);
              const chunks: Buffer[] = [];
              let start = 0;
              for (const point of [...points, body.length]) {
                if (point > start) chunks.push(body.subarray(start, point));
                start = Math.max(start, point);
              }
              const res = await rawRequest(server.port, {
                headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
                chunks,
              });
              if (body.length <= limit) {
                expect(res.status).toBe(200);
                expect(JSON.parse(res.body).ctxBody).toEqual(value);
              } else {
                expect(res.status).toBe(413);
              }
            },
          ),
          { numRuns, examples: [[exactlyLimit], [oneOver]] },
        );
      } finally {
        await server.close();
      }
    });
  });
});

describe('bodyLimit options', () => {
  it.each([
    [{ maxBytes: 0 }, 'maxBytes'],
    [{ maxBytes: -1 }, 'maxBytes'],
    [{ maxBytes: 1.5 }, 'maxBytes'],
    [{ maxBytes: Number.NaN }, 'maxBytes'],
    [{ maxBytes: Number.POSITIVE_INFINITY }, 'maxBytes'],
    [{ maxBytes: '1024' as unknown as number }, 'maxBytes'],
    [{ parse: 'xml' as unknown as 'json' }, 'parse'],
    [{ parse: 'JSON' as unknown as 'json' }, 'parse'],
  ])('throws a TypeError naming the option for %j', (options, name) => {
    expect(() => bodyLimit(options)).toThrow(TypeError);
    expect(() => bodyLimit(options)).toThrow(name);
  });

  // resolveBodyLimitOptions never checks `decompress`: a string from an env var silently turns
  // decompression on ("false" is truthy).
  it('throws a TypeError naming decompress for a non-boolean value', () => {
    expect(() => bodyLimit({ decompress: 'false' as unknown as boolean })).toThrow(TypeError);
  });

  it('builds with no options at all', () => {
    expect(typeof bodyLimit()).toBe('function');
  });
});
