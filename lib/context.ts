// The per-request context: the one object llmux middlewares share (on `res.locals.llmux`).
// Middlewares never talk through module globals; they read and fill this.
import type { ModelPrice } from './pricing/price.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { protocolOf } from './protocol/builtin.js';
import { OPENAI } from './protocol/openai.js';
import type { ProtocolRoute, WireProtocol } from './protocol/types.js';
import type { Usage } from './usage.js';

/** One upstream attempt of a request, for metrics and the tracker. */
export interface AttemptRecord {
  /** The endpoint's name (never its key). */
  upstream: string;
  /** `ok`, or the failure category (`rate_limit`, `server`, `network`, `timeout`, `cancelled`, …). */
  outcome: string;
  /** The upstream's HTTP status, when it answered. */
  status: number | undefined;
}

export type { Usage } from './usage.js';

/**
 * Everything llmux knows about one client request. Created by {@link requestContext} (or lazily
 * by the first llmux middleware that needs it) and stored on `res.locals.llmux`.
 */
export class RequestContext {
  /** Request id: the client's sane `x-request-id`, or a generated UUID. Echoed on the response. */
  readonly id: string;
  /** `performance.now()` when the context was created. */
  readonly startedAt: number;
  /** Wall-clock start, ms since the epoch. */
  readonly startedAtEpochMs: number;
  /** The parsed JSON body, once read by `bodyLimit` (or taken from `express.json()`). */
  body: Record<string, unknown> | undefined = undefined;
  /** The raw request bytes as received, when llmux read them; forwarded as-is when unchanged. */
  rawBody: Buffer | undefined = undefined;
  /**
   * The request's wire protocol: it reads the body and the answer and shapes the errors.
   * Found from the route when the context is made; the preset sets it from the route it matched.
   */
  protocol: WireProtocol;
  /** The protocol route the request matched (undefined for a path no protocol serves). */
  route: ProtocolRoute | undefined;
  /** `model` from the body, when it is a string. */
  model: string | undefined = undefined;
  /** True when the client asked for `stream: true`. */
  stream = false;
  /** Identity of the authenticated key (never the secret). */
  keyId: string | undefined = undefined;
  /** The key's team, when it has one. */
  teamId: string | undefined = undefined;
  /** The key's user, when it has one. */
  userId: string | undefined = undefined;
  /** Name of the upstream that served the request. */
  upstream: string | undefined = undefined;
  /**
   * The model the request was served as: the model its upstream endpoint was asked for (a model
   * router's deployment), else `model`. Billing, the tracker and `x-llmux-model` use it.
   */
  servedModel: string | undefined = undefined;
  /**
   * The model a model router asks of a deployment that names none (the group's name, or the
   * client's model for a glob match); set on every pick. Undefined: the client's model.
   */
  routedModel: string | undefined = undefined;
  /** The price of the endpoint that served the request, when it has its own (undefined: the catalog's). */
  servedPrice: ModelPrice | undefined = undefined;
  /** The upstream's id of the exchange that answered (its `x-request-id` or `request-id`). */
  upstreamRequestId: string | undefined = undefined;
  /** True when `id` is the client's own `x-request-id`. */
  idFromClient = false;
  /** The client's `x-llmux-fallbacks` header, read by a model router that allows it. */
  fallbacksHeader: string | undefined = undefined;
  /** ms the request waited in a concurrency gate's queue, when it passed one. */
  gateWaitMs: number | undefined = undefined;
  /** Upstream attempts made for this request. */
  attempts = 0;
  /** How each attempt ended, in order (bounded by the retry policy's attempts, plus a hedge). */
  readonly attemptLog: AttemptRecord[] = [];
  /** Why each retry happened (the failure category of the attempt before it). */
  readonly retryReasons: string[] = [];
  /** Usage read from the upstream response (JSON body or SSE stream). */
  usage: Usage | undefined = undefined;
  /**
   * True while `usage` holds a stream's counts so far, not its final ones (Anthropic's
   * `message_start` gives the input, its `message_delta` the output): a stream cut in between is
   * billed at least the chunks it relayed.
   */
  usagePartial = false;
  /** Completion chunks relayed so far on a stream (an estimate of tokens when usage never came). */
  streamedChunks = 0;
  /** The cost billed by key accounting, in USD, once settled (undefined without accounting). */
  costUsd: number | undefined = undefined;
  /**
   * Prices a usage at this request's model, when the host asked for the cost to be shown to the
   * client (`keyAuth({ exposeCost })`): the relay uses it for the `x-llmux-cost-usd` header.
   */
  priceUsage: ((usage: Usage) => number) | undefined = undefined;
  /** `performance.now()` when the first response byte went to the client. */
  firstByteAt: number | undefined = undefined;
  /** Stable code of the error the request ended with, if any. */
  errorCode: string | undefined = undefined;
  /** Set by `recovery` once it logged this request's failure, so it is logged once. */
  failureLogged = false;
  /** Work the settled event still waits for (the relay's exchange, key accounting). */
  private holds = 0;
  private responseClosed = false;
  private settledState = false;
  private settledListeners: (() => void)[] | undefined = undefined;

  constructor(id: string, protocol: WireProtocol = OPENAI, route?: ProtocolRoute) {
    this.id = id;
    this.startedAt = performance.now();
    this.startedAtEpochMs = Date.now();
    this.protocol = protocol;
    this.route = route;
  }

  /**
   * True once the request is settled: its response closed (answered, failed, or the client
   * left), the relay's last attempt is logged and key accounting has priced it. Fired once.
   */
  get settled(): boolean {
    return this.settledState;
  }

  /**
   * Marks work that observers must see the end of before they read the context (the relay's
   * exchange, the cost). Returns its release; releasing twice does nothing.
   */
  hold(): () => void {
    if (this.settledState) return noop;
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.settleIfDone();
    };
  }

  /**
   * Runs `listener` once, when the request is settled (see {@link settled}); on the next tick
   * when it already is. Observers (metrics, the tracker) read the context here, never earlier.
   */
  onSettled(listener: () => void): void {
    if (this.settledState) {
      process.nextTick(listener);
      return;
    }
    (this.settledListeners ??= []).push(listener);
  }

  /** Resolves once the request is settled. */
  whenSettled(): Promise<void> {
    return new Promise((resolve) => this.onSettled(resolve));
  }

  /** Called once by the context's own close listener. */
  markResponseClosed(): void {
    this.responseClosed = true;
    this.settleIfDone();
  }

  private settleIfDone(): void {
    if (this.settledState || !this.responseClosed || this.holds > 0) return;
    this.settledState = true;
    const listeners = this.settledListeners;
    this.settledListeners = undefined;
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener();
      } catch {
        // An observer's fault must not keep the others from hearing the request.
      }
    }
  }
}

function noop(): void {}

/** The header llmux reads and echoes the request id on. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** The request header naming a request's model fallbacks (read by a model router that allows it). */
export const FALLBACKS_HEADER = 'x-llmux-fallbacks';

const MAX_REQUEST_ID_LENGTH = 128;

/** True for ids of 1–128 characters from `[A-Za-z0-9._-]`; anything else is replaced. */
export function isSaneRequestId(value: string): boolean {
  const length = value.length;
  if (length === 0 || length > MAX_REQUEST_ID_LENGTH) return false;
  for (let i = 0; i < length; i++) {
    const c = value.charCodeAt(i);
    const ok =
      (c >= 48 && c <= 57) || // 0-9
      (c >= 65 && c <= 90) || // A-Z
      (c >= 97 && c <= 122) || // a-z
      c === 45 || // -
      c === 46 || // .
      c === 95; // _
    if (!ok) return false;
  }
  return true;
}

interface WithLocals {
  locals?: Record<string, unknown>;
}

/** The context of this request, or `undefined` if no llmux middleware ran yet. */
export function getContext(res: ServerResponse): RequestContext | undefined {
  const locals = (res as WithLocals).locals;
  return locals === undefined ? undefined : (locals.llmux as RequestContext | undefined);
}

/**
 * The context of this request, created (and the id echoed) if no llmux middleware made one yet.
 * Every llmux middleware calls this so each can be mounted alone.
 */
export function ensureContext(req: IncomingMessage, res: ServerResponse): RequestContext {
  const host = res as WithLocals;
  let locals = host.locals;
  if (locals === undefined) {
    locals = Object.create(null) as Record<string, unknown>;
    host.locals = locals;
  }
  const existing = locals.llmux as RequestContext | undefined;
  if (existing !== undefined) return existing;
  const incoming = req.headers[REQUEST_ID_HEADER];
  const fromClient = typeof incoming === 'string' && isSaneRequestId(incoming);
  const { protocol, route } = protocolOf(req.method, req.url);
  const ctx = new RequestContext(fromClient ? incoming : randomUUID(), protocol, route);
  ctx.idFromClient = fromClient;
  const fallbacks = req.headers[FALLBACKS_HEADER];
  if (typeof fallbacks === 'string') ctx.fallbacksHeader = fallbacks;
  locals.llmux = ctx;
  if (!res.headersSent) res.setHeader(REQUEST_ID_HEADER, ctx.id);
  onResponseClose(res, () => ctx.markResponseClosed());
  return ctx;
}

/** The client's address as the socket sees it (`unknown` when it is gone); what limiters count by by default. */
export function socketAddress(req: IncomingMessage): string {
  return req.socket?.remoteAddress ?? 'unknown';
}

/**
 * Runs `listener` once when the response closes (finished, or the client left). When it already
 * closed — the client left while an earlier middleware was awaiting — it runs on the next tick,
 * so work registered late is never stranded.
 */
export function onResponseClose(res: ServerResponse, listener: () => void): void {
  if ((res as { closed?: boolean }).closed === true) process.nextTick(listener);
  else res.once('close', listener);
}
