// The relay: sends the client's request to an upstream over undici with the relay's own key and
// streams the answer back (JSON bounded, SSE event by event with backpressure), reading usage.
import { resolveResponseHeaders } from '../upstream/answer-headers.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { ensureContext, type RequestContext } from '../context.js';
import { resolveBodyLimitOptions, loadJsonBody, type BodyLimitSettings } from './body-limit.js';
import { ClientCache, type ClientCacheOptions } from '../upstream/client-cache.js';
import { runExchange, type ExchangeSettings, type HedgeOptions } from '../upstream/exchange.js';
import { retry, RetryPolicy, type RetryOptions } from '../retry/policy.js';
import { OptionReader } from '../options.js';
import { resolveForwardHeaders } from '../upstream/forward-headers.js';
import { toUpstreamSource, type StaticUpstreamOptions, type UpstreamSource } from '../upstream/source.js';
import type { AttemptSettings } from '../upstream/attempt.js';

type Next = (err?: unknown) => void;

/** Options of {@link streamRelay}. */
export interface StreamRelayOptions {
  /**
   * Where requests go: a base URL (`'https://api.openai.com/v1'`), `{ url, apiKeys }` (the keys
   * are the relay's own and are used in turn), or an {@link UpstreamSource} such as a pool.
   * The client's credentials are never forwarded.
   */
  upstream: UpstreamSource | StaticUpstreamOptions | string;
  /** Longest wait for the upstream's response headers, in ms; then 504 `upstream_timeout`. Default 120_000. */
  firstByteTimeoutMs?: number;
  /**
   * Longest silence between two body chunks of the upstream, in ms. Before anything reached the
   * client it is a 504; after, an SSE error frame ends the stream. Default 60_000.
   */
  idleTimeoutMs?: number;
  /**
   * Longest a non-stream answer may take to arrive whole once its headers came, in ms: an
   * upstream that trickles its body (a byte every few seconds never trips `idleTimeoutMs`) is cut
   * with 504 `upstream_timeout`. A retry policy's `deadlineMs` cuts it sooner. Default 60_000.
   */
  responseTimeoutMs?: number;
  /**
   * Longest a client may leave written data unread, in ms: a stream whose client stopped reading
   * (the relay has paused the upstream for it) ends with an SSE error frame `client_stalled` and
   * its connection is closed, freeing its gate permit, pool slot and upstream socket; a JSON
   * answer never read is cut the same way. Default 60_000.
   */
  clientStallTimeoutMs?: number;
  /** Largest upstream JSON (or error) body relayed, in bytes; a larger one is a 502. Default 16 MiB. */
  maxResponseBytes?: number;
  /** Largest single SSE event accepted from the upstream, in bytes. Default 1 MiB. */
  maxEventBytes?: number;
  /**
   * Bound for the request body when no {@link bodyLimit} ran before the relay, in bytes.
   * Default 1 MiB.
   */
  maxRequestBytes?: number;
  /**
   * Ask the upstream for usage on streams (`stream_options.include_usage`) when the client did
   * not, so streams can be accounted; the extra usage chunk is not shown to such a client.
   * Default true.
   */
  requestStreamUsage?: boolean;
  /**
   * Client headers forwarded upstream, lower-case. Credentials never are. A header that can make
   * the upstream refuse the relay's key (an organization, a project) would let a client disable
   * pooled keys: forward such headers only from trusted clients. Default: the protocol's own
   * (`openai-beta`; `anthropic-version`, `anthropic-beta`).
   */
  forwardHeaders?: readonly string[];
  /**
   * Upstream response headers passed to the client; a trailing `*` makes a prefix, `[]` passes
   * none. The upstream's `x-request-id` comes as `x-upstream-request-id` when the client sent its
   * own (kept), else as `x-request-id`. An upstream's `x-llmux-*` never replaces the relay's
   * own. Default: `x-request-id`, `request-id`, `openai-processing-ms`, `x-ratelimit-*`,
   * `anthropic-ratelimit-*`.
   */
  forwardResponseHeaders?: readonly string[];
  /**
   * Maps a request to the upstream route appended to the upstream's base path. Default: the
   * request path after its `/v1` segment (`/v1/chat/completions` → `/chat/completions`), with
   * the query string.
   */
  route?: (req: IncomingMessage) => string;
  /** Upstream connection pools: sockets per origin, keep-alive, connect timeout, cache size and TTL. */
  clients?: ClientCacheOptions;
  /**
   * Retry policy from {@link retry}, or the {@link RetryOptions} to build one: failed attempts are
   * retried (on another upstream when the source has one) only while nothing has reached the
   * client. Default: no retry.
   */
  retry?: RetryPolicy | RetryOptions;
  /**
   * Hedging: when the first attempt has produced no response headers after `afterMs`, a second
   * starts on another upstream; the first to answer wins, the other is aborted and never billed.
   * Default: off.
   */
  hedge?: HedgeOptions;
}

/** The middleware returned by {@link streamRelay}; `close()` closes its upstream connections. */
export interface StreamRelay {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /** Closes the upstream connection pools after their in-flight requests end. Idempotent. */
  close(): Promise<void>;
}

/**
 * Relays OpenAI-compatible requests to an upstream. JSON answers are read (up to
 * `maxResponseBytes`) so usage is recorded and an `{"error": …}` body is always treated as an
 * error; `stream: true` answers are relayed event by event, uncompressed, with backpressure and
 * nothing buffered beyond one event. When the client leaves, the upstream request is aborted at
 * once. A stream the upstream cuts before `[DONE]` ends with an SSE error frame.
 *
 * @example
 * const relay = streamRelay({ upstream: { url: 'https://api.openai.com/v1', apiKeys: [process.env.OPENAI_API_KEY!] } });
 * app.post('/v1/chat/completions', bodyLimit(), relay);
 * // on shutdown: await relay.close();
 */
export function streamRelay(options: StreamRelayOptions): StreamRelay {
  const owner = 'streamRelay';
  const read = new OptionReader(owner);
  read.options(options, true);
  const source = toUpstreamSource(options.upstream, owner);
  const bodySettings: BodyLimitSettings = resolveBodyLimitOptions(
    { maxBytes: read.positiveInteger('maxRequestBytes', options.maxRequestBytes, 1_048_576) },
    owner,
  );
  const settings: AttemptSettings = {
    firstByteTimeoutMs: read.durationMs('firstByteTimeoutMs', options.firstByteTimeoutMs, 120_000),
    idleTimeoutMs: read.durationMs('idleTimeoutMs', options.idleTimeoutMs, 60_000),
    maxResponseBytes: read.positiveInteger('maxResponseBytes', options.maxResponseBytes, 16 * 1_048_576),
    maxEventBytes: read.positiveInteger('maxEventBytes', options.maxEventBytes, 1_048_576),
    forwardHeaders: resolveForwardHeaders(read, options.forwardHeaders),
    responseHeaders: resolveResponseHeaders(read, options.forwardResponseHeaders),
    responseTimeoutMs: read.durationMs('responseTimeoutMs', options.responseTimeoutMs, 60_000),
    clientStallTimeoutMs: read.durationMs('clientStallTimeoutMs', options.clientStallTimeoutMs, 60_000),
  };
  const requestStreamUsage = read.boolean('requestStreamUsage', options.requestStreamUsage, true);
  const route = read.function('route', options.route, defaultRoute);
  const exchange: ExchangeSettings = {
    source,
    clients: new ClientCache(read.object('clients', options.clients)),
    retry: resolveRetry(read, options.retry),
    hedge: resolveHedge(read, options.hedge),
  };

  const relay = function llmuxStreamRelay(req: IncomingMessage, res: ServerResponse, next: Next): void {
    handle(req, res).then(undefined, next);
  } as StreamRelay;
  relay.close = () => exchange.clients.close();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = ensureContext(req, res);
    // Observers wait for the exchange: its last attempt ends after the response may have closed.
    const releaseExchange = ctx.hold();
    try {
      await relayRequest(req, res, ctx);
    } finally {
      releaseExchange();
    }
  }

  async function relayRequest(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    if (!(await loadJsonBody(req, res, ctx, bodySettings))) return;
    if ((res as { closed?: boolean }).closed) return; // the client left while the body was read
    const payload = ctx.protocol.upstreamRequest(ctx, requestStreamUsage);
    // One signal for the whole exchange: every attempt and every retry wait ends when the client leaves.
    const clientGone = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) {
        // Known now, before any close listener that records the request reads the context.
        ctx.errorCode = 'client_closed';
        clientGone.abort();
      }
    };
    res.once('close', onClose);
    try {
      await runExchange(exchange, {
        req,
        res,
        ctx,
        method: (req.method ?? 'POST') as Dispatcher.HttpMethod,
        route: route(req),
        body: payload.body,
        hideUsage: payload.hideUsage,
        requestStreamUsage,
        settings,
        clientSignal: clientGone.signal,
      });
    } finally {
      res.off('close', onClose);
    }
  }

  return relay;
}

function resolveHedge(read: OptionReader, hedge: HedgeOptions | undefined): HedgeOptions | undefined {
  if (hedge === undefined) return undefined;
  return { afterMs: read.durationMs('hedge.afterMs', read.object('hedge', hedge).afterMs) };
}

/** A policy from {@link retry}, or the options to build one from. */
function resolveRetry(
  read: OptionReader,
  value: RetryPolicy | RetryOptions | undefined,
): RetryPolicy | undefined {
  if (value === undefined || value instanceof RetryPolicy) return value;
  return retry(read.object('retry', value));
}

/** `/v1/chat/completions?x=1` → `/chat/completions?x=1`; a path without `/v1` is kept whole. */
export function defaultRoute(req: IncomingMessage): string {
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  const marker = url.indexOf('/v1/');
  if (marker !== -1) return url.slice(marker + 3);
  if (url.endsWith('/v1')) return '';
  return url;
}
