// Relays a non-stream answer: read whole (bounded), judged (an error body is an error whatever
// its status), its usage recorded, then sent byte for byte.
import { passedHeaders, writeAnswerHeaders } from './answer-headers.js';
import type { Dispatcher } from 'undici';
import { errors, withHeaders } from '../errors/llmux-error.js';
import { decodeUpstreamError, decodeUpstreamErrorObject } from '../errors/upstream.js';
import { parseRetryAfterMs, toRetryAfterSeconds } from '../retry/retry-after.js';
import { COST_HEADER, formatUsd } from './cost-header.js';
import { watchFinish } from './client-stall.js';
import {
  answered,
  CLIENT_LEFT,
  cutStalledClient,
  failed,
  failure,
  ignore,
  OK,
  transportFailure,
  type AttemptInput,
  type AttemptResult,
} from './attempt.js';

/** Reads a non-stream answer whole (bounded), then relays it or hands back its decoded error. */
export async function relayBuffered(
  input: AttemptInput,
  response: Dispatcher.ResponseData,
  controller: AbortController,
): Promise<AttemptResult> {
  const { res, ctx, settings } = input;
  const status = response.statusCode;
  // A body that trickles in is cut: at the response deadline, or the retry deadline if sooner.
  const now = performance.now();
  const deadline = Math.min(now + settings.responseTimeoutMs, input.deadlineAt ?? Infinity);
  let raw: Buffer;
  try {
    raw = await collect(
      response.body,
      settings.maxResponseBytes,
      Math.max(1, Math.ceil(deadline - now)),
      controller,
    );
  } catch (err) {
    return transportFailure(input, err, controller.signal.aborted);
  }
  if (status < 200 || status >= 300) {
    const retryAfterMs = parseRetryAfterMs(response.headers);
    const decoded = decodeUpstreamError(status, raw, toRetryAfterSeconds(retryAfterMs));
    // The upstream's request id and limits go with its error too: support asks for the id.
    const passed = passedHeaders(ctx, response.headers, settings.responseHeaders);
    const error = passed === undefined ? decoded.error : withHeaders(decoded.error, passed);
    return failure(res, ctx, error, failed(decoded.category, decoded.status, retryAfterMs));
  }
  // Every answer of an OpenAI route is a JSON object: anything else (an HTML page from a wrong
  // base URL, an empty body) is a decode error, never a success.
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return failure(res, ctx, errors.upstreamDecode(status), failed('decode', status));
  }
  const answer = parsed as Record<string, unknown>;
  const errorField = ctx.protocol.errorOf(answer);
  if (errorField !== undefined && errorField !== null) {
    const decoded = decodeUpstreamErrorObject(status, errorField);
    return failure(res, ctx, decoded.error, failed(decoded.category, decoded.status));
  }
  const usage = ctx.protocol.readUsage(answer);
  if (usage !== undefined) ctx.usage = usage;
  if (res.destroyed) return CLIENT_LEFT;
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', raw.length);
  writeAnswerHeaders(res, ctx, response.headers, settings.responseHeaders);
  if (ctx.priceUsage !== undefined && usage !== undefined) {
    res.setHeader(COST_HEADER, formatUsd(ctx.priceUsage(usage)));
  }
  ctx.firstByteAt = performance.now();
  res.end(raw);
  // A client that never reads the answer would hold its connection (and gate permit) for ever.
  watchFinish(res, settings.clientStallTimeoutMs, () => cutStalledClient(res, ctx));
  return answered(OK);
}

/**
 * Reads a body into one Buffer, failing (and aborting the upstream) past `maxBytes` or when it is
 * not whole within `timeoutMs`.
 */
function collect(
  body: Dispatcher.ResponseData['body'],
  maxBytes: number,
  timeoutMs: number,
  controller: AbortController,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (error: unknown) => {
      cleanup();
      controller.abort();
      body.destroy();
      reject(error);
    };
    const timer = setTimeout(() => stop(errors.upstreamTimeout('response')), timeoutMs);
    timer.unref();
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        stop(errors.upstreamTooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      clearTimeout(timer);
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      // A late error after we stopped listening must not become an uncaught exception.
      body.on('error', ignore);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
  });
}
