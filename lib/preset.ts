// The preset: one Express Router that mounts the llmux pieces in the recommended order for every
// protocol's routes. Hosts that want another order mount the middlewares one by one.
import { ModelRouter } from './upstream/router.js';
import { OptionReader } from './options.js';
import express from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext } from './context.js';
import { errors, llmuxError, sendError } from './errors/llmux-error.js';
import type { LlmuxMetrics, WatchablePool } from './metrics/metrics.js';
import type { RequestTracker } from './tracking/tracker.js';
import { bodyLimit, type BodyLimitOptions } from './middleware/body-limit.js';
import {
  concurrencyGate,
  type ConcurrencyGate,
  type ConcurrencyGateOptions,
} from './middleware/concurrency-gate.js';
import { keyAuth, type KeyAuth, type KeyAuthOptions } from './middleware/key-auth.js';
import { passthrough } from './middleware/passthrough.js';
import { recovery } from './middleware/recovery.js';
import type { Logger } from './log.js';
import { requestContext } from './middleware/request-context.js';
import { streamRelay, type StreamRelay, type StreamRelayOptions } from './middleware/stream-relay.js';
import { toUpstreamSource, type StaticUpstreamOptions, type UpstreamSource } from './upstream/source.js';
import { ProtocolSources } from './upstream/protocol-sources.js';
import { BUILTIN_PROTOCOLS } from './protocol/builtin.js';
import { pathOf, RouteTable } from './protocol/routes.js';
import type { ProtocolName, WireProtocol } from './protocol/types.js';

/** Options of {@link llmux}. */
export interface LlmuxOptions {
  /** Where requests go: a base URL, `{ url, apiKeys }`, or an {@link UpstreamSource}. */
  upstream: UpstreamSource | StaticUpstreamOptions | string;
  /**
   * Upstreams of their own for some protocols, e.g. Anthropic's API for the Messages routes:
   * `{ 'anthropic-messages': { url: 'https://api.anthropic.com/v1', apiKeys: [key] } }`. A
   * protocol without one uses `upstream`. Default: none.
   */
  upstreams?: Partial<Record<ProtocolName, UpstreamSource | StaticUpstreamOptions | string>>;
  /**
   * The protocols served: `'openai'` (Chat Completions, Completions, Embeddings),
   * `'openai-responses'` (the Responses API) and `'anthropic-messages'` (Anthropic's Messages
   * API). Routes of the others are 404. Default: all of them.
   */
  protocols?: readonly ProtocolName[];
  /**
   * Client authentication and accounting, see {@link keyAuth}: `{ store, pricing, … }`, or
   * `{ keys }` for a fixed list; `false` turns it off (only behind your own auth).
   */
  auth: KeyAuthOptions | false;
  /** Request body bound and decoding, see {@link bodyLimit}. Default: 1 MiB, JSON. */
  body?: Omit<BodyLimitOptions, 'parse'>;
  /**
   * The FIFO concurrency gate in front of the relay, see {@link concurrencyGate}; `false` (the
   * default) mounts none.
   */
  gate?: ConcurrencyGateOptions | false;
  /** Relay settings (timeouts, retry, hedging, response bound), see {@link streamRelay}. */
  relay?: Omit<StreamRelayOptions, 'upstream'>;
  /** Where recovered errors are logged. Default: JSON lines on stderr. */
  logger?: Logger;
  /**
   * Prometheus metrics from {@link createMetrics}: the preset mounts their middleware first and
   * watches its gate and (when `upstream` is a pool) the pool. Default: none.
   */
  metrics?: LlmuxMetrics;
  /**
   * A {@link RequestTracker}: the preset mounts its middleware, so every request on the preset's
   * routes is recorded once (and handed to the tracker's sink). Default: none.
   */
  tracker?: RequestTracker;
}

/** The Router returned by {@link llmux}; `close()` releases its upstream connections. */
export type LlmuxRouter = express.Router & {
  /** The middlewares the preset mounted, for stats and health pages. */
  readonly pieces: {
    readonly relay: StreamRelay;
    readonly auth: KeyAuth | undefined;
    readonly gate: ConcurrencyGate | undefined;
  };
  /** Closes the relay's upstream pools and a key store the preset made itself. Idempotent. */
  close(): Promise<void>;
};

/** The routes the preset relays with usage accounting (those that generate or embed). */
export const RELAYED_ROUTES: readonly string[] = Object.freeze(
  BUILTIN_PROTOCOLS.flatMap((protocol) =>
    protocol.routes.filter((route) => route.operation !== 'free').map((route) => route.path),
  ),
);

/**
 * An Express Router serving the protocols' routes (OpenAI Chat Completions, Completions,
 * Embeddings and Responses; Anthropic Messages) through llmux, in this order: request context →
 * body limit → key auth → concurrency gate (when configured) → stream relay. `GET /v1/models` is
 * passed through (or answered from a model router's groups), any other `/v1` route is answered
 * 404 in the OpenAI error shape, and recovery is the last handler.
 *
 * @example
 * const gateway = llmux({
 *   upstream: { url: 'https://api.openai.com/v1', apiKeys: [process.env.OPENAI_API_KEY!] },
 *   auth: { keys: [{ id: 'team-a', key: process.env.TEAM_A_KEY! }] },
 * });
 * app.use(gateway);
 * // on shutdown: await gateway.close();
 */
export function llmux(options: LlmuxOptions): LlmuxRouter {
  const read = new OptionReader('llmux');
  read.options(options, true);
  if (options.auth === undefined) {
    throw new TypeError('llmux: auth is required: pass { keys } or false to run without client auth');
  }
  const defaultSource = toUpstreamSource(options.upstream, 'llmux');
  const routes = new RouteTable(resolveProtocols(read, options.protocols));
  const source = protocolSources(read, defaultSource, options.upstreams);
  const relay = streamRelay({ ...read.object('relay', options.relay), upstream: source });
  // A model router lists its own models; anything else asks the upstream.
  const models =
    defaultSource instanceof ModelRouter
      ? routedModels(defaultSource)
      : passthrough({ target: defaultSource });
  const limit = bodyLimit({ ...read.object('body', options.body), parse: 'json' });
  // A source that routes models tells key auth what a request may be served as.
  const auth =
    options.auth === false
      ? undefined
      : keyAuth({
          router: source.servedModels === undefined ? undefined : source,
          ...read.object('auth', options.auth),
        });
  const gate = options.gate ? concurrencyGate(read.object('gate', options.gate)) : undefined;
  const metrics =
    options.metrics === undefined
      ? undefined
      : read.implementing<LlmuxMetrics>(
          'metrics',
          options.metrics,
          ['middleware', 'watchGate', 'watchPool'],
          'a createMetrics() instance',
        );
  if (options.tracker !== undefined) {
    read.implementing('tracker', options.tracker, ['middleware'], 'a RequestTracker');
  }
  if (options.logger !== undefined) {
    read.implementing('logger', options.logger, ['error'], 'an object with an error() method');
  }

  const router = express.Router() as LlmuxRouter;
  const unwatch: (() => void)[] = [];
  // Every /v1 request is observed; only the preset's own routes are (host routes after it are not).
  const observers: Middleware[] = [];
  if (metrics !== undefined) {
    observers.push(metrics.middleware());
    if (gate !== undefined) unwatch.push(metrics.watchGate(gate));
    const sources = source instanceof ProtocolSources ? source.sources : [source];
    for (const watched of sources) {
      if (typeof (watched as Partial<WatchablePool>).status === 'function') {
        unwatch.push(metrics.watchPool(watched as unknown as WatchablePool));
      }
    }
  }
  if (options.tracker !== undefined) observers.push(options.tracker.middleware());
  observers.push(requestContext());
  const guarded = [limit, auth, gate].filter((mw) => mw !== undefined);
  // What costs nothing upstream (a model list, a stored response, a token count): authenticate,
  // but count no quota and check no allow-list.
  const authenticateOnly = auth === undefined ? [] : [auth.authenticateOnly];
  const chains: PresetChains = {
    relayed: [...observers, ...guarded, relay],
    free: [...observers, limit, ...authenticateOnly, ...(gate === undefined ? [] : [gate]), relay],
    models: [...observers, ...authenticateOnly, models],
    unknown: [...observers, unknownRoute],
  };
  // One layer instead of one per piece and route: the router's per-layer path matching is a
  // measurable share of a relayed request (BENCHMARKS.md).
  router.use(function llmuxPreset(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const path = pathOf(req.url ?? '/');
    if (!underV1(path)) {
      next();
      return;
    }
    const match = routes.match(req.method, path);
    if (match !== undefined) {
      // The route the preset matched is the request's protocol, whatever a lazy guess said.
      const ctx = ensureContext(req, res);
      ctx.protocol = match.protocol;
      ctx.route = match.route;
      runChain(match.route.operation === 'free' ? chains.free : chains.relayed, req, res, next);
      return;
    }
    runChain(isModelsRead(req.method, path) ? chains.models : chains.unknown, req, res, next);
  });
  router.use(recovery({ logger: options.logger }));
  Object.defineProperty(router, 'pieces', { value: Object.freeze({ relay, auth, gate }) });
  router.close = async () => {
    for (const stop of unwatch.splice(0)) stop();
    await gate?.close();
    await relay.close();
    await auth?.close();
  };
  return router;
}

type Next = (err?: unknown) => void;
type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => unknown;

interface PresetChains {
  /** Generating and embedding routes: admitted, billed. */
  relayed: readonly Middleware[];
  /** Routes that cost nothing upstream: authenticated, gated, relayed unbilled. */
  free: readonly Middleware[];
  models: readonly Middleware[];
  unknown: readonly Middleware[];
}

function resolveProtocols(read: OptionReader, names: readonly ProtocolName[] | undefined): WireProtocol[] {
  if (names === undefined) return [...BUILTIN_PROTOCOLS];
  if (!Array.isArray(names)) read.fail('protocols', 'an array of protocol names', names);
  const known = BUILTIN_PROTOCOLS.map((protocol) => protocol.name);
  return names.map((name) => BUILTIN_PROTOCOLS[known.indexOf(read.oneOf('protocols[]', name, known))]!);
}

/** The relay's source: `upstream`, with the protocols that have their own routed to theirs. */
function protocolSources(
  read: OptionReader,
  fallback: UpstreamSource,
  upstreams: LlmuxOptions['upstreams'],
): UpstreamSource {
  if (upstreams === undefined) return fallback;
  const byProtocol = new Map<ProtocolName, UpstreamSource>();
  const known = BUILTIN_PROTOCOLS.map((protocol) => protocol.name);
  for (const [name, upstream] of Object.entries(read.object('upstreams', upstreams))) {
    read.oneOf('upstreams', name, known);
    byProtocol.set(name as ProtocolName, toUpstreamSource(upstream!, `llmux: upstreams.${name}`));
  }
  return byProtocol.size === 0 ? fallback : new ProtocolSources(fallback, byProtocol);
}

/** `/v1` or `/v1/…`, the prefix in any case. */
function underV1(path: string): boolean {
  if (path.length < 3 || (path.length > 3 && path.charCodeAt(3) !== 47) /* / */) return false;
  return (
    path.charCodeAt(0) === 47 && (path.charCodeAt(1) | 0x20) === 118 /* v */ && path.charCodeAt(2) === 49
  );
}

/** Answers `GET /v1/models` and `/v1/models/{id}` from a model router's groups and aliases. */
function routedModels(router: ModelRouter): Middleware {
  return function llmuxRoutedModels(req: IncomingMessage, res: ServerResponse): void {
    const path = pathOf(req.url ?? '/');
    const id = path === '/v1/models' ? undefined : safeDecode(path.slice('/v1/models/'.length));
    const body = id === undefined ? router.listModels() : router.listModels(id);
    if (body === undefined) {
      sendError(
        res,
        llmuxError('model_not_found', {
          message: `model ${JSON.stringify(id)} is not served here`,
          param: 'model',
        }),
      );
      return;
    }
    const json = JSON.stringify(body);
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(json));
    res.end(req.method === 'HEAD' ? undefined : json);
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** `GET` (or `HEAD`) of `/v1/models` or `/v1/models/{one segment}`. */
function isModelsRead(method: string | undefined, path: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (path === '/v1/models') return true;
  if (!path.startsWith('/v1/models/')) return false;
  const model = path.slice('/v1/models/'.length);
  return model.length > 0 && !model.includes('/');
}

/**
 * Runs `chain` in order, as an Express route runs its handlers: each goes on with `next()`; an
 * error passed to `next`, thrown, or rejected by an async handler goes to `done` (recovery).
 */
function runChain(chain: readonly Middleware[], req: IncomingMessage, res: ServerResponse, done: Next): void {
  let index = 0;
  const fail = (err: unknown) => done(err ?? new Error('llmux: a middleware rejected without a reason'));
  const step = (err?: unknown): void => {
    if (err === 'route' || err === 'router') return done();
    if (err !== undefined && err !== null) return done(err);
    const handler = chain[index++];
    if (handler === undefined) return done();
    try {
      const result = handler(req, res, step);
      if (result instanceof Promise) result.then(undefined, fail);
    } catch (thrown) {
      fail(thrown);
    }
  };
  step();
}

function unknownRoute(req: IncomingMessage, res: ServerResponse): void {
  const ctx = ensureContext(req, res);
  ctx.errorCode = 'not_found';
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url;
  sendError(res, errors.notFound(`route ${req.method ?? ''} ${stripQuery(url)}`));
}

function stripQuery(url: string | undefined): string {
  if (url === undefined) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
