// Sends one attempt's request to the upstream over undici, with the relay's key and the allowed
// client headers, and hands the response to the JSON or the SSE relay.
import type { IncomingMessage } from 'node:http';
import type { Dispatcher } from 'undici';
import type { RequestContext } from '../context.js';
import { transportFailure, type AttemptInput, type AttemptResult } from './attempt.js';
import { relayBuffered } from './json-relay.js';
import type { AnswerFacts, AttemptOutcome, UpstreamEndpoint } from './source.js';
import { readRateLimits } from './rate-limits.js';
import { SseRelay } from './sse-relay.js';

/** Sends the request; resolves with the upstream's response, or with the failed attempt. */
export async function requestUpstream(
  input: AttemptInput,
  controller: AbortController,
): Promise<Dispatcher.ResponseData | AttemptResult> {
  const { req, ctx, endpoint, settings } = input;
  try {
    return await input.pool.request({
      method: input.method,
      path: input.path,
      headers: upstreamHeaders(req, ctx, endpoint, input.body, settings.forwardHeaders),
      body: input.body,
      signal: controller.signal,
      headersTimeout: input.headersTimeoutMs ?? settings.firstByteTimeoutMs,
      bodyTimeout: settings.idleTimeoutMs,
    });
  } catch (err) {
    return transportFailure(input, err, controller.signal.aborted);
  }
}

/** Relays a response obtained by {@link requestUpstream}. */
export function relayResponse(
  input: AttemptInput,
  response: Dispatcher.ResponseData,
  controller: AbortController,
): Promise<AttemptResult> {
  const type = headerString(response.headers['content-type']);
  if (response.statusCode >= 200 && response.statusCode < 300 && type.startsWith('text/event-stream')) {
    return new SseRelay(input, response, controller).run();
  }
  return relayBuffered(input, response, controller);
}

/**
 * What the answer's headers tell of the upstream: its time to answer (from `sentAt`, a
 * `performance.now()`) and its rate-limit state.
 */
export function answerFacts(
  ctx: RequestContext,
  response: Dispatcher.ResponseData,
  sentAt: number,
): AnswerFacts {
  // The upstream's own id of the exchange (OpenAI's x-request-id, Anthropic's request-id), kept
  // so a record can be matched with what the provider's support sees.
  const id = response.headers['x-request-id'] ?? response.headers['request-id'];
  if (typeof id === 'string') ctx.upstreamRequestId = id;
  return { latencyMs: performance.now() - sentAt, limits: readRateLimits(response.headers, Date.now()) };
}

/** The attempt's result with the facts of its answer added to its outcome, for the source. */
export function withFacts(result: AttemptResult, facts: AnswerFacts): AttemptResult {
  const outcome: AttemptOutcome = result.outcome.ok
    ? { ok: true, latencyMs: facts.latencyMs, limits: facts.limits }
    : { ...result.outcome, ...facts };
  return { outcome, unsent: result.unsent, network: result.network };
}

/** Distinguishes a response from a failed attempt. */
export function isResponse(value: Dispatcher.ResponseData | AttemptResult): value is Dispatcher.ResponseData {
  return (value as Dispatcher.ResponseData).statusCode !== undefined;
}

function upstreamHeaders(
  req: IncomingMessage,
  ctx: RequestContext,
  endpoint: UpstreamEndpoint,
  body: Buffer | string | undefined,
  forwardOption: readonly string[] | undefined,
): Record<string, string> {
  const forward = forwardOption ?? ctx.protocol.forwardHeaders;
  const headers: Record<string, string> = {
    accept: ctx.stream ? 'text/event-stream' : 'application/json',
    'accept-encoding': 'identity',
    'x-request-id': ctx.id,
  };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (endpoint.apiKey !== undefined) ctx.protocol.authenticate(headers, endpoint.apiKey);
  for (let i = 0; i < forward.length; i++) {
    const name = forward[i]!;
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return headers;
}

function headerString(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return (Array.isArray(value) ? (value[0] ?? '') : value).toLowerCase();
}
