// recovery and asyncHandler against real Express apps (5 and 4): normalized answers, one log event
// per failure without credentials, and clean endings for responses that already started.
import { describe, expect, it, jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import express5 from 'express';
import type { NextFunction, Request, Response } from 'express';
import { errors, LlmuxError } from '../lib/index.js';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { asyncHandler, recovery } from '../lib/middleware/recovery.js';
import { type Logger } from '../lib/log.js';
import { expressVersions } from './support/express-versions.js';
import { chat, listen, sseEvents } from './support/http.js';

type ExpressFactory = (typeof expressVersions)[number][1];
type App = ReturnType<ExpressFactory>;

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Set when the connection failed before the response completed. */
  networkError: string | undefined;
}

const ANSWER_TIMEOUT_MS = 3000;

/** A logger that records every event. */
function recordingLogger() {
  const error = jest.fn<Logger['error']>();
  return { logger: { error } satisfies Logger, events: () => error.mock.calls.map(([, fields]) => fields) };
}

/** A GET over a fresh connection that reports a cut connection instead of throwing. */
async function rawGet(app: App, path = '/'): Promise<RawResponse> {
  const { port, close } = await listen(app);
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: ANSWER_TIMEOUT_MS });
      req.on('timeout', () => {
        reject(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`));
        req.destroy();
      });
      // A connection cut before the headers came is a network error too.
      req.on('error', (err: NodeJS.ErrnoException) =>
        resolve({ status: 0, headers: {}, body: '', networkError: err.code ?? err.message }),
      );
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        const answer = (networkError: string | undefined) =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString('utf8'),
            networkError,
          });
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () => answer(undefined));
        res.on('error', (err: NodeJS.ErrnoException) => answer(err.code ?? err.message));
      });
    });
  } finally {
    await close();
  }
}

/**
 * A host error handler that lets `handler` answer and then passes the error on (as a
 * notifier such as an error tracker would), so the next error handler sees it too.
 */
function answerThenForward(handler: ReturnType<typeof recovery>) {
  return (err: unknown, req: Request, res: Response, next: NextFunction) => {
    handler(err, req, res, () => {});
    next(err);
  };
}

/** The events of an SSE body, each as its `event` and its `data` parsed as JSON. */
const sseFrames = (body: string) =>
  sseEvents(body).map(({ event, data }) => ({ event, data: JSON.parse(data) as unknown }));

const internalErrorBody = {
  error: { message: expect.any(String), type: 'server_error', code: 'internal_error', param: null },
};

describe.each(expressVersions)('recovery on %s', (_label, express) => {
  function appWith(logger: Logger, route: (req: Request, res: Response, next: NextFunction) => unknown): App {
    const app = express();
    app.all('/v1/chat/completions', route);
    app.use(recovery({ logger }));
    return app;
  }

  describe('errors before the response started', () => {
    it('keeps a client error of express.json() (an unsupported charset) a 4xx, not a logged 500', async () => {
      const { logger } = recordingLogger();
      const app = express();
      app.use(express.json());
      app.post('/v1/chat/completions', bodyLimit(), (_req, res) => {
        res.json({ ok: true });
      });
      app.use(recovery({ logger }));
      const res = await request(app)
        .post('/v1/chat/completions')
        .set('content-type', 'application/json; charset=klingon')
        .send(JSON.stringify(chat()));
      expect(res.status).toBe(415);
      expect(logger.error).not.toHaveBeenCalled();
    });

    it('answers a sync throw with 500 internal_error in the OpenAI error shape', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw new Error('boom');
        }),
      ).post('/v1/chat/completions');
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual(internalErrorBody);
    });

    it.each([
      ['an Error', () => new Error('database password hunter2-secret')],
      ['a TypeError', () => new TypeError('hunter2-secret is not a function')],
      ['a string', () => 'hunter2-secret'],
      ['a plain object', () => ({ message: 'hunter2-secret' })],
    ])('never shows the message of %s thrown by a handler to the client', async (_what, make) => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw make();
        }),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(500);
      expect(res.body.error.code).toBe('internal_error');
      expect(res.text).not.toContain('hunter2');
    });

    it.each([
      [errors.invalidApiKey(), 401, 'invalid_api_key', null],
      [errors.bodyTooLarge(10), 413, 'body_too_large', null],
      [
        new LlmuxError('model gpt-5 is not allowed', {
          status: 403,
          type: 'permission_error',
          code: 'model_not_allowed',
          param: 'model',
        }),
        403,
        'model_not_allowed',
        'model',
      ],
      [errors.upstreamUnreachable(), 502, 'upstream_unreachable', null],
    ])('keeps the status and code of a thrown LlmuxError (%#)', async (error, status, code, param) => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw error;
        }),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(status);
      expect(res.body.error).toMatchObject({ type: error.type, code, param });
    });

    it('sets Retry-After for a thrown 503 overloaded error', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw errors.overloaded('busy', 7);
        }),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('7');
      expect(res.body.error.code).toBe('overloaded');
    });

    it.each([
      ['too large', { limit: 10 }, '{"model":"gpt-4o-mini"}', 413, 'body_too_large'],
      ['not JSON', {}, '{"model":', 400, 'invalid_json'],
    ])(
      'keeps the meaning of an express.json() error for a body that is %s',
      async (_what, options, body, status, code) => {
        const { logger } = recordingLogger();
        const app = express();
        app.post('/', express.json(options), (_req, res) => {
          res.end();
        });
        app.use(recovery({ logger }));
        const res = await request(app).post('/').set('Content-Type', 'application/json').send(body);
        expect(res.status).toBe(status);
        expect(res.body.error.code).toBe(code);
      },
    );

    it('echoes the x-request-id of the client on the error response', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw new Error('boom');
        }),
      )
        .get('/v1/chat/completions')
        .set('x-request-id', 'req-abc.123_x');
      expect(res.status).toBe(500);
      expect(res.headers['x-request-id']).toBe('req-abc.123_x');
    });
  });

  describe('promises', () => {
    it('sends a rejection of a handler wrapped in asyncHandler to recovery', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(
          logger,
          asyncHandler(async () => {
            await Promise.resolve();
            throw new Error('async boom');
          }),
        ),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(500);
      expect(res.body).toEqual(internalErrorBody);
    });

    it('sends a sync throw of a handler wrapped in asyncHandler to recovery', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(
          logger,
          asyncHandler(() => {
            throw errors.invalidApiKey();
          }),
        ),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_api_key');
    });

    it('lets a handler wrapped in asyncHandler answer normally', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(
          logger,
          asyncHandler(async (_req, res: Response) => {
            await Promise.resolve();
            res.json({ ok: true });
          }),
        ),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ ok: true });
      expect(logger.error).not.toHaveBeenCalled();
    });
  });

  describe('logging', () => {
    it('logs one event per failure with request id, method, path without query, status and stack', async () => {
      const { logger, events } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw new Error('boom');
        }),
      ).post('/v1/chat/completions?user=42&debug=1');
      expect(logger.error).toHaveBeenCalledTimes(1);
      expect(events()[0]).toMatchObject({
        requestId: res.headers['x-request-id'],
        method: 'POST',
        path: '/v1/chat/completions',
        status: 500,
        stack: expect.stringContaining('boom'),
      });
      expect(JSON.stringify(events()[0])).not.toContain('debug=1');
    });

    it('never logs the Authorization header value or an sk- key from the error message', async () => {
      const { logger, events } = recordingLogger();
      const clientKey = 'sk-client-AAAAAAAAAAAAAAAAAAAA';
      const upstreamKey = 'sk-proj-BBBBBBBBBBBBBBBBBBBB';
      const teamToken = 'team-token-CCCCCCCCCCCCCCCC';
      const app = appWith(logger, (req) => {
        throw new Error(`upstream refused ${upstreamKey} (client sent ${String(req.headers.authorization)})`);
      });
      await request(app).get('/v1/chat/completions').set('Authorization', `Bearer ${clientKey}`);
      await request(app).get('/v1/chat/completions').set('Authorization', `Bearer ${teamToken}`);
      expect(logger.error).toHaveBeenCalledTimes(2);
      const logged = JSON.stringify(events());
      expect(logged).not.toContain('AAAAAAAAAAAA');
      expect(logged).not.toContain('BBBBBBBBBBBB');
      expect(logged).not.toContain('CCCCCCCCCCCC');
    });

    it('never logs an sk- key passed in the query string', async () => {
      const { logger, events } = recordingLogger();
      await request(
        appWith(logger, () => {
          throw new Error('boom');
        }),
      ).get('/v1/chat/completions?api_key=sk-query-DDDDDDDDDDDDDDDD');
      expect(logger.error).toHaveBeenCalledTimes(1);
      expect(JSON.stringify(events())).not.toContain('DDDDDDDDDDDD');
    });

    it('does not log a thrown 4xx LlmuxError', async () => {
      const { logger } = recordingLogger();
      const res = await request(
        appWith(logger, () => {
          throw errors.invalidRequest('messages is required', 'messages');
        }),
      ).get('/v1/chat/completions');
      expect(res.status).toBe(400);
      expect(logger.error).not.toHaveBeenCalled();
    });

    it('logs a thrown 5xx LlmuxError', async () => {
      const { logger, events } = recordingLogger();
      await request(
        appWith(logger, () => {
          throw errors.upstreamUnreachable();
        }),
      ).get('/v1/chat/completions');
      expect(logger.error).toHaveBeenCalledTimes(1);
      expect(events()[0]).toMatchObject({ status: 502 });
    });

    it('logs an error that reaches the same recovery twice only once', async () => {
      const { logger } = recordingLogger();
      const handler = recovery({ logger });
      const app = express();
      app.get('/', () => {
        throw new Error('boom');
      });
      app.use(answerThenForward(handler));
      app.use(handler);
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      expect(logger.error).toHaveBeenCalledTimes(1);
    });

    // The "logged once" memory is a WeakSet inside each recovery() instance, so a second instance
    // that sees the same error on the same request logs it again.
    it('logs an error once when two recovery handlers see it on the same request', async () => {
      const { logger } = recordingLogger();
      const app = express();
      app.get('/', () => {
        throw new Error('boom');
      });
      app.use(answerThenForward(recovery({ logger })));
      app.use(recovery({ logger }));
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      expect(logger.error).toHaveBeenCalledTimes(1);
    });

    it('logs an error once when a router has its own recovery and the app has another', async () => {
      const { logger } = recordingLogger();
      const router = express.Router();
      router.get('/chat/completions', () => {
        throw new Error('boom');
      });
      router.use(recovery({ logger }));
      const app = express();
      app.use('/v1', router);
      app.use(recovery({ logger }));
      const res = await request(app).get('/v1/chat/completions');
      expect(res.status).toBe(500);
      expect(logger.error).toHaveBeenCalledTimes(1);
    });

    // recovery.ts keeps a WeakSet of logged error objects for the lifetime of the middleware, not
    // of the request: a second request failing with the same object (a memoized rejected
    // promise, a shared sentinel error) is never logged.
    it('logs every failed request even when they fail with the same error object', async () => {
      const { logger } = recordingLogger();
      const initFailure = Promise.reject(new Error('upstream client failed to start'));
      initFailure.catch(() => {});
      const app = appWith(
        logger,
        asyncHandler(async () => {
          await initFailure;
        }),
      );
      await request(app).get('/v1/chat/completions');
      await request(app).get('/v1/chat/completions');
      expect(logger.error).toHaveBeenCalledTimes(2);
    });

    it('writes one JSON line to stderr when no logger is given', async () => {
      const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        const app = express();
        app.get('/', () => {
          throw new Error('boom');
        });
        app.use(recovery());
        const res = await request(app).get('/');
        const lines = write.mock.calls.map(([chunk]) => String(chunk));
        expect(lines).toHaveLength(1);
        expect(JSON.parse(lines[0]!)).toMatchObject({
          level: 'error',
          requestId: res.headers['x-request-id'],
        });
      } finally {
        write.mockRestore();
      }
    });
  });

  describe('errors after the response started', () => {
    it('ends a started SSE stream with an event: error frame', async () => {
      const { logger } = recordingLogger();
      const app = appWith(logger, (_req, res) => {
        res.setHeader('Content-Type', 'text/event-stream');
        res.write('data: {"n":1}\n\n');
        throw new Error('boom');
      });
      const res = await rawGet(app, '/v1/chat/completions');
      expect(res.status).toBe(200);
      expect(res.networkError).toBeUndefined();
      expect(sseFrames(res.body)).toEqual([
        { event: 'message', data: { n: 1 } },
        { event: 'error', data: internalErrorBody },
      ]);
    });

    it('ends a started SSE stream with an event: error frame when the error comes from a rejected promise', async () => {
      const { logger } = recordingLogger();
      const app = appWith(
        logger,
        asyncHandler(async (_req, res: Response) => {
          res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
          res.write('data: {"n":1}\n\n');
          await Promise.resolve();
          throw errors.upstreamTruncated();
        }),
      );
      const res = await rawGet(app, '/v1/chat/completions');
      expect(res.networkError).toBeUndefined();
      const frames = sseFrames(res.body);
      expect(frames.at(-1)).toEqual({
        event: 'error',
        data: { error: expect.objectContaining({ code: 'upstream_stream_truncated' }) },
      });
    });

    // A host that writes SSE headers with writeHead(status, headers) only, with nothing set
    // through setHeader before, leaves res.getHeader('content-type') undefined: recovery then
    // takes the stream for JSON and cuts the connection instead of sending the error frame.
    it('ends an SSE stream started with writeHead(200, headers) with an event: error frame', async () => {
      const { logger } = recordingLogger();
      const app = express();
      app.disable('x-powered-by');
      app.get('/', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: {"n":1}\n\n');
        throw new Error('boom');
      });
      app.use(recovery({ logger }));
      const res = await rawGet(app);
      expect(res.networkError).toBeUndefined();
      expect(sseFrames(res.body).at(-1)).toEqual({ event: 'error', data: internalErrorBody });
    });

    it('cuts the connection of a started JSON response so the client sees a network error', async () => {
      const { logger } = recordingLogger();
      const app = appWith(logger, (_req, res) => {
        res.setHeader('Content-Type', 'application/json');
        res.write('{"id":"chatcmpl-1","choices":[');
        throw new Error('boom');
      });
      const res = await rawGet(app, '/v1/chat/completions');
      expect(res.networkError).toBeDefined();
    });

    it('cuts the connection of a JSON response whose first bytes already reached the client', async () => {
      const { logger } = recordingLogger();
      const app = appWith(
        logger,
        asyncHandler(async (_req, res: Response) => {
          res.setHeader('Content-Type', 'application/json');
          res.write('{"id":"chatcmpl-1","choices":[');
          await new Promise((resolve) => setImmediate(resolve));
          throw new Error('boom');
        }),
      );
      const res = await rawGet(app, '/v1/chat/completions');
      expect(res.networkError).toBeDefined();
      expect(() => JSON.parse(res.body)).toThrow();
    });

    it('logs a failure of a started response once', async () => {
      const { logger } = recordingLogger();
      const app = appWith(logger, (_req, res) => {
        res.setHeader('Content-Type', 'text/event-stream');
        res.write('data: {"n":1}\n\n');
        throw new Error('boom');
      });
      await rawGet(app, '/v1/chat/completions');
      expect(logger.error).toHaveBeenCalledTimes(1);
    });
  });
});

describe('recovery on express 5 without asyncHandler', () => {
  it('receives the rejection of an async handler from Express itself', async () => {
    const { logger } = recordingLogger();
    const app = express5();
    app.get('/', async () => {
      await Promise.resolve();
      throw new Error('async boom');
    });
    app.use(recovery({ logger }));
    const res = await request(app).get('/');
    expect(res.status).toBe(500);
    expect(res.body).toEqual(internalErrorBody);
    expect(logger.error).toHaveBeenCalledTimes(1);
  });
});

describe('recovery on express 4 with asyncHandler', () => {
  // An unhandled rejection ends a Node process; jest's sandboxed `process` cannot observe one, so
  // the app runs in a child process of its own.
  it('keeps the process alive and answering after async handlers reject', async () => {
    const script = `
      import express from 'express4';
      import http from 'node:http';
      import { asyncHandler, recovery } from './lib/middleware/recovery.ts';
      const app = express();
      app.get('/', asyncHandler(async () => { await Promise.resolve(); throw new Error('async boom'); }));
      app.use(recovery({ logger: { error() {} } }));
      const server = app.listen(0, '127.0.0.1', async () => {
        const statuses = [];
        for (let i = 0; i < 2; i++) {
          statuses.push(await new Promise((resolve) => http.get(
            { host: '127.0.0.1', port: server.address().port },
            (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); },
          )));
        }
        await new Promise((resolve) => setImmediate(resolve));
        process.stdout.write(JSON.stringify(statuses));
        server.close();
      });
    `;
    const repoRoot = fileURLToPath(new URL('..', import.meta.url));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        { cwd: repoRoot, timeout: 10_000 },
        (err, out) => (err ? reject(err) : resolve(out)),
      );
    });
    expect(JSON.parse(stdout)).toEqual([500, 500]);
  });
});
