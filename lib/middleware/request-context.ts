// Creates the per-request context first thing, so every later piece (and the host) sees one id.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext } from '../context.js';

type Next = (err?: unknown) => void;

/**
 * Creates the request's {@link RequestContext} on `res.locals.llmux`: the request id (the
 * client's `x-request-id` when it is 1–128 characters of `[A-Za-z0-9._-]`, else a new UUID),
 * echoed on the response, and the start time. Other llmux middlewares create it lazily when this
 * one is not mounted, so mounting it is only needed to fix the id early for your own handlers.
 *
 * @example
 * app.use(requestContext());
 * app.get('/whoami', (req, res) => res.json({ id: getContext(res)?.id }));
 */
export function requestContext() {
  return function llmuxRequestContext(req: IncomingMessage, res: ServerResponse, next: Next): void {
    ensureContext(req, res);
    next();
  };
}
