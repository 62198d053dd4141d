// The record of one finished request: what the tracker keeps, the live feed shows and the usage
// sink stores. Built once per request from its context; holds no secret.
import type { ServerResponse } from 'node:http';
import type { RequestContext } from '../context.js';

/** One finished client request. Ids are identities, never secrets. */
export interface RequestRecord {
  /** The request id (`x-request-id`). */
  id: string;
  /** Start, ms since the epoch. */
  timeMs: number;
  /** Route path without the query string, e.g. `/v1/chat/completions`. */
  route: string;
  /** The model the client asked for. */
  model: string | undefined;
  /**
   * The model that served it, when an upstream was asked for another (a model router's
   * deployment, a fallback); per-model rollups count the request under it.
   */
  servedModel?: string;
  keyId: string | undefined;
  teamId: string | undefined;
  userId: string | undefined;
  /** HTTP status sent (0 when the client left before any answer). */
  status: number;
  /** Stable error code, when the request failed. */
  errorCode: string | undefined;
  stream: boolean;
  /** From start to the response's close, in ms. */
  latencyMs: number;
  /** From start to the first byte sent to the client, in ms, when one was sent. */
  ttfbMs: number | undefined;
  promptTokens: number;
  completionTokens: number;
  /** The token classes inside those totals (cached, cache-write, reasoning, audio); llmux sets them all. */
  cachedTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  audioPromptTokens?: number;
  audioCompletionTokens?: number;
  /** Cost in USD as settled by key accounting (0 when not accounted). */
  costUsd: number;
  /** The upstream that served the last attempt. */
  upstream: string | undefined;
  /** The upstream's own id of that exchange (`x-request-id`, Anthropic's `request-id`), for its support. */
  upstreamRequestId?: string;
  attempts: number;
}

/** Builds the record of a finished request from its context and response. */
export function recordOf(
  ctx: RequestContext,
  res: ServerResponse,
  route: string,
  nowMs: number,
): RequestRecord {
  const usage = ctx.usage;
  return {
    id: ctx.id,
    timeMs: ctx.startedAtEpochMs,
    route,
    model: ctx.model,
    servedModel: ctx.servedModel === ctx.model ? undefined : ctx.servedModel,
    keyId: ctx.keyId,
    teamId: ctx.teamId,
    userId: ctx.userId,
    status: res.headersSent ? res.statusCode : 0,
    errorCode: ctx.errorCode,
    stream: ctx.stream,
    latencyMs: nowMs - ctx.startedAt,
    ttfbMs: ctx.firstByteAt === undefined ? undefined : ctx.firstByteAt - ctx.startedAt,
    promptTokens: usage?.promptTokens ?? 0,
    completionTokens: usage?.completionTokens ?? 0,
    cachedTokens: usage?.cachedTokens ?? 0,
    cacheWriteTokens: usage?.cacheWriteTokens ?? 0,
    reasoningTokens: usage?.reasoningTokens ?? 0,
    audioPromptTokens: usage?.audioPromptTokens ?? 0,
    audioCompletionTokens: usage?.audioCompletionTokens ?? 0,
    costUsd: ctx.costUsd ?? 0,
    upstream: ctx.upstream,
    upstreamRequestId: ctx.upstreamRequestId,
    attempts: ctx.attempts,
  };
}
