// A plain reverse proxy (http-proxy-middleware) for routes without LLM semantics — /v1/models,
// files — with the relay's key instead of the client's and errors in the OpenAI shape.
import { OptionReader } from '../options.js';
import { BUILTIN_PROTOCOLS } from '../protocol/builtin.js';
import { resolveForwardHeaders } from '../upstream/forward-headers.js';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { ensureContext, getContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';
import {
  toUpstreamSource,
  type StaticUpstreamOptions,
  type UpstreamEndpoint,
  type UpstreamSource,
} from '../upstream/source.js';
import { defaultRoute } from './stream-relay.js';

type Next = (err?: unknown) => void;

/** Options of {@link passthrough}. */
export interface PassthroughOptions {
  /** Where requests go: a base URL, `{ url, apiKeys }`, or an {@link UpstreamSource}. */
  target: UpstreamSource | StaticUpstreamOptions | string;
  /** Longest wait for the upstream's answer, in ms; then 504 `upstream_timeout`. Default 60_000. */
  timeoutMs?: number;
  /** Maps a request to the upstream route after the base path. Default: the path after `/v1`. */
  route?: (req: IncomingMessage) => string;
  /**
   * Client headers forwarded upstream besides those that describe the body and the client
   * (`accept`, `accept-encoding`, `content-type`, `content-length`, `content-encoding`,
   * `transfer-encoding`, `user-agent`), lower-case; every other one (an `OpenAI-Organization`,
   * an `X-Forwarded-For`) is dropped, as the relay does. Credentials never are. Default: every
   * protocol's own (`openai-beta`, `anthropic-version`, `anthropic-beta`).
   */
  forwardHeaders?: readonly string[];
}

/** The middleware returned by {@link passthrough}. */
export type Passthrough = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

const ENDPOINT = Symbol('llmux.passthroughEndpoint');
const TIMED_OUT = Symbol('llmux.passthroughTimedOut');
/** Set when the upstream failed the exchange (unreachable, timed out, broke off mid-answer). */
const UPSTREAM_FAILED = Symbol('llmux.passthroughUpstreamFailed');
type WithEndpoint = IncomingMessage & {
  [ENDPOINT]?: UpstreamEndpoint;
  [TIMED_OUT]?: boolean;
  [UPSTREAM_FAILED]?: boolean;
};

/** The headers that describe the body and the client, forwarded on every proxied request. */
const BODY_HEADERS: readonly string[] = [
  'accept',
  'accept-encoding',
  'content-type',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'user-agent',
];

/**
 * Keeps only the allowed client headers and puts the upstream's key in, on the request itself,
 * before the proxy copies its headers: http-proxy skips its `proxyReq` hook for
 * `Expect: 100-continue` requests, so a rewrite there could be bypassed (`Expect` is not kept).
 */
function rewriteHeaders(
  req: IncomingMessage,
  allowed: ReadonlySet<string>,
  endpoint: UpstreamEndpoint,
  requestId: string,
): void {
  const headers = req.headers;
  for (const name of Object.keys(headers)) {
    if (!allowed.has(name)) delete headers[name];
  }
  if (endpoint.apiKey !== undefined) headers.authorization = `Bearer ${endpoint.apiKey}`;
  headers['x-request-id'] = requestId;
}

/**
 * Proxies a route as is, for endpoints that need no usage accounting (`/v1/models`,
 * `/v1/files`). Responses stream through untouched. The client's `Authorization`/`x-api-key`
 * are replaced by the upstream's key. A JSON body already read by {@link bodyLimit} is
 * re-sent; pair upload routes with `bodyLimit({ parse: 'none' })` so they stream.
 *
 * @example
 * app.get('/v1/models', keyAuth({ keys }), passthrough({ target: { url: 'https://api.openai.com/v1', apiKeys } }));
 */
export function passthrough(options: PassthroughOptions): Passthrough {
  const read = new OptionReader('passthrough');
  read.options(options, true);
  const source = toUpstreamSource(options.target, 'passthrough');
  const timeoutMs = read.durationMs('timeoutMs', options.timeoutMs, 60_000);
  const route = read.function('route', options.route, defaultRoute);
  const allowed: ReadonlySet<string> = new Set([
    ...BODY_HEADERS,
    ...(resolveForwardHeaders(read, options.forwardHeaders) ??
      BUILTIN_PROTOCOLS.flatMap((protocol) => protocol.forwardHeaders)),
  ]);

  const llmuxPlugin: Plugin = (proxyServer) => {
    proxyServer.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) => {
      // http-proxy aborts on its proxyTimeout; remember why, so the answer is a 504.
      proxyReq.once('timeout', () => {
        (req as WithEndpoint)[TIMED_OUT] = true;
      });
      const ctx = getContext(res);
      const raw =
        ctx?.rawBody ?? (ctx?.body === undefined ? undefined : Buffer.from(JSON.stringify(ctx.body)));
      if (raw !== undefined) {
        // The body stream was drained by bodyLimit: send the bytes it kept.
        proxyReq.setHeader('content-type', 'application/json');
        proxyReq.setHeader('content-length', raw.length);
        proxyReq.removeHeader('transfer-encoding');
        proxyReq.removeHeader('content-encoding');
        proxyReq.end(raw);
      }
    });
    proxyServer.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
      // The plugins we eject would tie the two sides together; do it here: a client that leaves
      // frees the upstream, and an upstream that breaks off ends the client's response.
      const onClientClose = () => {
        if (!res.writableFinished) proxyRes.destroy();
      };
      res.once('close', onClientClose);
      proxyRes.once('close', () => {
        if (!proxyRes.complete && !res.writableEnded) {
          if (!res.destroyed) (req as WithEndpoint)[UPSTREAM_FAILED] = true;
          res.destroy();
        }
        res.off('close', onClientClose);
      });
    });
    proxyServer.on('error', (err: Error, req: IncomingMessage, res: ServerResponse | unknown) => {
      if (!isServerResponse(res)) return;
      // Not the upstream's fault when the client left first (the proxy then aborts its request).
      if (!res.destroyed) (req as WithEndpoint)[UPSTREAM_FAILED] = true;
      const ctx = getContext(res);
      const error = (req as WithEndpoint)[TIMED_OUT]
        ? errors.upstreamTimeout('first byte')
        : res.headersSent
          ? errors.upstreamTruncated()
          : errors.upstreamUnreachable(err);
      if (ctx !== undefined) ctx.errorCode = error.code;
      if (res.headersSent) res.destroy();
      else sendError(res, error);
    });
  };

  const proxy = createProxyMiddleware<IncomingMessage, ServerResponse>({
    changeOrigin: true,
    xfwd: false,
    proxyTimeout: timeoutMs,
    ejectPlugins: true,
    plugins: [llmuxPlugin],
    router: (req) => {
      const endpoint = (req as WithEndpoint)[ENDPOINT]!;
      return endpoint.origin;
    },
    pathRewrite: (_path, req) => (req as WithEndpoint)[ENDPOINT]!.basePath + route(req),
  });

  const middleware = function llmuxPassthrough(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = ensureContext(req, res);
    let endpoint: UpstreamEndpoint;
    try {
      endpoint = source.acquire(ctx);
    } catch (err) {
      const error = err instanceof LlmuxError ? err : errors.internal(err);
      ctx.errorCode = error.code;
      sendError(res, error);
      return;
    }
    ctx.upstream = endpoint.name;
    ctx.attempts++;
    (req as WithEndpoint)[ENDPOINT] = endpoint;
    rewriteHeaders(req, allowed, endpoint, ctx.id);
    res.once('close', () => {
      const failed = (req as WithEndpoint)[UPSTREAM_FAILED] === true || res.statusCode >= 500;
      source.release(
        endpoint,
        failed
          ? { ok: false, category: 'server', status: res.statusCode, retryAfterMs: undefined }
          : res.writableFinished
            ? { ok: true }
            : // The client left: one client's choice says nothing of the upstream's health.
              { ok: false, category: 'cancelled', status: undefined, retryAfterMs: undefined },
      );
    });
    proxy(req, res, next).catch(next);
  };
  return middleware;
}

function isServerResponse(value: unknown): value is ServerResponse {
  return (
    typeof value === 'object' && value !== null && typeof (value as ServerResponse).setHeader === 'function'
  );
}
