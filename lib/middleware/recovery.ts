// Turns any error a handler throws or rejects with into a normalized answer, logs it once with
// its stack and request id (never a credential), and keeps the process alive.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import { ensureContext } from '../context.js';
import { errorShapeOf, isLlmuxError, sendError, toLlmuxError } from '../errors/llmux-error.js';
import { stderrLogger, type Logger } from '../log.js';
import { redactSecrets } from '../redact.js';

type Next = (err?: unknown) => void;

/** Options of {@link recovery}. */
export interface RecoveryOptions {
  /** Receives one event per recovered error. Default: a JSON line on stderr. */
  logger?: Logger;
}

/**
 * The error handler that ends every failed request cleanly. Mount it after your routes
 * (Express calls error handlers placed after the failing layer); the `llmux()` preset mounts it
 * at the end of its router.
 *
 * - Headers not sent yet: a response in the OpenAI error shape, 500 `internal_error` for
 *   anything that is not an {@link LlmuxError} (whose message is never shown to the client).
 * - A stream already started: an SSE `event: error` frame, then the response ends. A JSON
 *   response already started cannot be repaired, so its socket is closed.
 * - Unexpected errors (5xx) are logged once with stack and request id; secrets are redacted
 *   and the URL is logged without its query string.
 *
 * Express 5 forwards rejected promises of async handlers here by itself. Express 4 does not:
 * wrap async handlers with {@link asyncHandler} there, or a rejection escapes the request.
 *
 * @example
 * app.use('/v1', routes);
 * app.use(recovery({ logger: { error: (msg, fields) => pinoLogger.error(fields, msg) } }));
 */
export function recovery(options: RecoveryOptions = {}) {
  const logger = options.logger ?? stderrLogger;
  return function llmuxRecovery(err: unknown, req: IncomingMessage, res: ServerResponse, _next: Next): void {
    const ctx = ensureContext(req, res);
    const error = toLlmuxError(err);
    ctx.errorCode = error.code;
    // Once per request: a second recovery (router's, then app's) seeing the same failure stays quiet.
    if (error.status >= 500 && !ctx.failureLogged) {
      ctx.failureLogged = true;
      logger.error('request failed', describeFailure(err, req, ctx.id, error.status));
    }
    if (res.writableEnded || res.destroyed) return;
    if (!res.headersSent) {
      sendError(res, error);
      return;
    }
    if (isEventStream(res)) {
      res.end(errorShapeOf(res).errorFrame(error));
      return;
    }
    // Half a JSON body cannot be made whole: end the connection so the client sees the failure.
    res.destroy();
  };
}

/** True when the started response is SSE, whether its type came from setHeader or writeHead. */
function isEventStream(res: ServerResponse): boolean {
  const type = res.getHeader('content-type');
  if (typeof type === 'string') return type.toLowerCase().startsWith('text/event-stream');
  // writeHead(status, headers) without prior setHeader keeps only the serialized header block.
  const block = (res as { _header?: unknown })._header;
  return typeof block === 'string' && /^content-type:\s*text\/event-stream/im.test(block);
}

function describeFailure(err: unknown, req: IncomingMessage, requestId: string, status: number) {
  const url = req.url ?? '';
  const query = url.indexOf('?');
  const fields: Record<string, unknown> = {
    requestId,
    method: req.method,
    path: query === -1 ? url : url.slice(0, query),
    status,
  };
  if (err instanceof Error) {
    fields.error = err.name;
    fields.message = redactSecrets(err.message);
    if (err.stack) fields.stack = redactSecrets(err.stack);
  } else if (!isLlmuxError(err)) {
    fields.message = redactSecrets(String(err));
  }
  return fields;
}

/**
 * Wraps a handler so a thrown error or a rejected promise goes to `next(err)`, and so to
 * {@link recovery}. Needed on Express 4 for async handlers; harmless on Express 5. The handler's
 * `req` and `res` are Express's `Request` and `Response` unless its parameters say otherwise
 * (annotate them, e.g. `(req: IncomingMessage, res: ServerResponse)`, outside Express).
 *
 * @example
 * app.get('/v1/usage', asyncHandler(async (req, res) => res.json(await loadUsage())));
 */
export function asyncHandler<Req extends IncomingMessage = Request, Res extends ServerResponse = Response>(
  handler: (req: Req, res: Res, next: Next) => unknown,
) {
  return function llmuxAsyncHandler(req: Req, res: Res, next: Next): void {
    let result: unknown;
    try {
      result = handler(req, res, next);
    } catch (err) {
      next(err);
      return;
    }
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as Promise<unknown>).then === 'function'
    ) {
      (result as Promise<unknown>).then(undefined, next);
    }
  };
}
