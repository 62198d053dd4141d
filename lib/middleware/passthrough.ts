// A plain reverse proxy (http-proxy-middleware) for routes without LLM semantics — /v1/models,
// files — with the relay's key instead of the client's and errors in the OpenAI shape.
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { ensureContext, getContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors.js';
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
}

/** The middleware returned by {@link passthrough}. */
export type Passthrough = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

const ENDPOINT = Symbol('llmux.passthroughEndpoint');
type WithEndpoint = IncomingMessage & { [ENDPOINT]?: UpstreamEndpoint };

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
  if (typeof options !== 'object' || options === null)
    throw new TypeError('passthrough: options are required');
  const source = toUpstreamSource(options.target, 'passthrough');
  const timeoutMs = options.timeoutMs ?? 60_000;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError(
      `passthrough: timeoutMs must be a positive integer, got ${String(options.timeoutMs)}`,
    );
  }
  const route = options.route ?? defaultRoute;

  const llmuxPlugin: Plugin = (proxyServer) => {
    proxyServer.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) => {
      const endpoint = (req as WithEndpoint)[ENDPOINT];
      proxyReq.removeHeader('x-api-key');
      proxyReq.removeHeader('cookie');
      if (endpoint?.apiKey !== undefined) proxyReq.setHeader('authorization', `Bearer ${endpoint.apiKey}`);
      else proxyReq.removeHeader('authorization');
      const ctx = getContext(res);
      if (ctx !== undefined) proxyReq.setHeader('x-request-id', ctx.id);
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
    proxyServer.on('error', (err: Error, _req: IncomingMessage, res: ServerResponse | unknown) => {
      if (!isServerResponse(res)) return;
      const ctx = getContext(res);
      const code = (err as { code?: string }).code;
      const error =
        code === 'ECONNRESET' && ctx !== undefined && res.headersSent
          ? errors.upstreamTruncated()
          : code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT'
            ? errors.upstreamTimeout('first byte')
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
    res.once('close', () => {
      const ok = res.statusCode < 500 && res.writableFinished;
      source.release(
        endpoint,
        ok
          ? { ok: true }
          : { ok: false, category: 'server', status: res.statusCode, retryAfterMs: undefined },
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
