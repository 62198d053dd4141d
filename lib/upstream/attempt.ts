// One upstream attempt's shared vocabulary: what it takes, how it ends, and how a failure reaches
// the client (handed back unsent while a retry may follow, or as an SSE frame once streaming).
import type { ResponseHeaderRule } from './answer-headers.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher, Pool } from 'undici';
import type { RequestContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';
import type { UpstreamErrorCategory } from '../errors/upstream.js';
import type { AttemptOutcome, UpstreamEndpoint } from './source.js';

/** Resolved relay settings an attempt needs. */
export interface AttemptSettings {
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  maxResponseBytes: number;
  maxEventBytes: number;
  /** Client headers forwarded upstream; undefined: the protocol's defaults. */
  forwardHeaders: readonly string[] | undefined;
  /** Upstream response headers passed to the client. */
  responseHeaders: ResponseHeaderRule;
  /** Longest a non-stream answer may take to arrive whole once its headers came. */
  responseTimeoutMs: number;
  /** Longest a client may leave written data unread before it is cut. */
  clientStallTimeoutMs: number;
}

/** Everything one attempt works with. */
export interface AttemptInput {
  req: IncomingMessage;
  res: ServerResponse;
  ctx: RequestContext;
  endpoint: UpstreamEndpoint;
  pool: Pool;
  method: Dispatcher.HttpMethod;
  path: string;
  body: Buffer | string | undefined;
  /** Drop the usage the relay asked for on the client's behalf. */
  hideUsage: boolean;
  /** Aborts when the client leaves; every attempt listens to it. */
  clientSignal: AbortSignal;
  /** This try's first-byte timeout when shorter than the setting (a retry deadline). */
  headersTimeoutMs?: number;
  /** `performance.now()` by which the whole exchange must end (the retry deadline), if any. */
  deadlineAt?: number;
  settings: AttemptSettings;
}

export const OK: AttemptOutcome = { ok: true };

export function failed(
  category: UpstreamErrorCategory,
  status?: number,
  retryAfterMs?: number,
): AttemptOutcome {
  return { ok: false, category, status, retryAfterMs };
}

/** How one attempt ended. */
export interface AttemptResult {
  /** For the upstream source. */
  outcome: AttemptOutcome;
  /**
   * Set when the attempt failed while nothing had reached the client: the answer to send if no
   * retry follows. Undefined when the client was answered (success or error) or has left.
   */
  unsent: LlmuxError | undefined;
  /** True when the failure was at the network level (no HTTP answer). */
  network: boolean;
}

export const CLIENT_LEFT: AttemptResult = { outcome: failed('cancelled'), unsent: undefined, network: false };

export function answered(outcome: AttemptOutcome): AttemptResult {
  return { outcome, unsent: undefined, network: false };
}

/**
 * Maps a failure of the upstream exchange to its error. Before anything reached the client the
 * error is handed back unsent; after, the stream ends with an SSE error frame.
 */
export function transportFailure(input: AttemptInput, err: unknown, aborted: boolean): AttemptResult {
  const { res, ctx } = input;
  if (aborted && input.clientSignal.aborted) {
    ctx.errorCode = 'client_closed';
    return CLIENT_LEFT;
  }
  if (aborted && !(err instanceof LlmuxError)) {
    // Aborted by the relay itself (a hedge that lost): not the upstream's fault.
    return CLIENT_LEFT;
  }
  const code = (err as { code?: string } | null)?.code;
  let error: LlmuxError;
  let category: UpstreamErrorCategory;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    error = errors.upstreamTimeout('first byte');
    category = 'timeout';
  } else if (code === 'UND_ERR_BODY_TIMEOUT') {
    error = errors.upstreamTimeout('idle');
    category = 'timeout';
  } else if (err instanceof LlmuxError) {
    error = err;
    category = err.code === 'upstream_timeout' ? 'timeout' : 'decode';
  } else {
    error = res.headersSent ? errors.upstreamTruncated() : errors.upstreamUnreachable(err);
    category = 'network';
  }
  return failure(res, ctx, error, failed(category), category === 'network');
}

/** A failed attempt: sent as an SSE frame when the stream started, else handed back unsent. */
export function failure(
  res: ServerResponse,
  ctx: RequestContext,
  error: LlmuxError,
  outcome: AttemptOutcome,
  network = false,
): AttemptResult {
  // The error code is the request's only once it is sent: a retry may still succeed.
  if (!res.headersSent) return { outcome, unsent: error, network };
  endWithError(res, ctx, error);
  return answered(outcome);
}

/** Sends `error` as JSON, or as an SSE frame when the stream already started. */
export function endWithError(res: ServerResponse, ctx: RequestContext, error: LlmuxError): void {
  ctx.errorCode = error.code;
  if (!res.headersSent) {
    sendError(res, error);
  } else if (!res.writableEnded && !res.destroyed) {
    res.end(ctx.protocol.errorFrame(error));
  }
}

/**
 * Cuts a client that stopped reading: the answer is recorded as `client_stalled` and the
 * connection closed, which frees its gate permit and everything else the response held.
 */
export function cutStalledClient(res: ServerResponse, ctx: RequestContext): void {
  ctx.errorCode = 'client_stalled';
  res.destroy();
}

/** Swallows a late stream error after the relay stopped listening. */
export function ignore(): void {}
