// One upstream attempt: sends the request, then relays the JSON or SSE answer to the client,
// reading usage and upstream errors. Every listener and the AbortController end with it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher, Pool } from 'undici';
import type { RequestContext } from '../context.js';
import {
  decodeUpstreamError,
  decodeUpstreamErrorObject,
  errors,
  LlmuxError,
  sendError,
  sseErrorFrame,
  type UpstreamErrorCategory,
} from '../errors.js';
import { parseRetryAfterMs, toRetryAfterSeconds } from '../retry/retry-after.js';
import type { AttemptOutcome, UpstreamEndpoint } from './source.js';
import { SseSplitter, type SseVisitor } from './sse.js';
import { readUsage, usageObjectIndex } from './usage.js';

/** Resolved relay settings an attempt needs. */
export interface AttemptSettings {
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  maxResponseBytes: number;
  maxEventBytes: number;
  forwardHeaders: readonly string[];
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
  /** Drop the usage-only chunk the relay asked for on the client's behalf. */
  hideUsageChunk: boolean;
  settings: AttemptSettings;
}

const OK: AttemptOutcome = { ok: true };

function failed(category: UpstreamErrorCategory, status?: number, retryAfterMs?: number): AttemptOutcome {
  return { ok: false, category, status, retryAfterMs };
}

/**
 * Runs one attempt to completion and answers the client (success or error). Resolves with how
 * the attempt went, for the upstream source; never rejects.
 */
export async function relayAttempt(input: AttemptInput): Promise<AttemptOutcome> {
  const { req, res, ctx, endpoint, settings } = input;
  const controller = new AbortController();
  const onClientClose = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.on('close', onClientClose);
  try {
    if (res.destroyed) return failed('network');
    const headers = upstreamHeaders(req, ctx, endpoint, input.body, settings.forwardHeaders);
    let response: Dispatcher.ResponseData;
    try {
      response = await input.pool.request({
        method: input.method,
        path: input.path,
        headers,
        body: input.body,
        signal: controller.signal,
        headersTimeout: settings.firstByteTimeoutMs,
        bodyTimeout: settings.idleTimeoutMs,
      });
    } catch (err) {
      return answerTransportFailure(res, ctx, err, controller.signal.aborted, false);
    }
    const type = headerString(response.headers['content-type']);
    if (response.statusCode >= 200 && response.statusCode < 300 && type.startsWith('text/event-stream')) {
      return await new SseRelay(input, response, controller).run();
    }
    return await relayBuffered(input, response, type, controller);
  } finally {
    res.off('close', onClientClose);
  }
}

function upstreamHeaders(
  req: IncomingMessage,
  ctx: RequestContext,
  endpoint: UpstreamEndpoint,
  body: Buffer | string | undefined,
  forward: readonly string[],
): Record<string, string> {
  const headers: Record<string, string> = {
    accept: ctx.stream ? 'text/event-stream' : 'application/json',
    'accept-encoding': 'identity',
    'x-request-id': ctx.id,
  };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (endpoint.apiKey !== undefined) headers.authorization = `Bearer ${endpoint.apiKey}`;
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

/** Maps a failure of the upstream exchange (no usable response) to the client's answer. */
function answerTransportFailure(
  res: ServerResponse,
  ctx: RequestContext,
  err: unknown,
  clientGone: boolean,
  started: boolean,
): AttemptOutcome {
  if (clientGone) {
    ctx.errorCode = 'client_closed';
    return failed('network');
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
    category = 'decode';
  } else {
    error = started ? errors.upstreamTruncated() : errors.upstreamUnreachable(err);
    category = 'network';
  }
  endWithError(res, ctx, error);
  return failed(category);
}

/** Sends `error` as JSON, or as an SSE frame when the stream already started. */
function endWithError(res: ServerResponse, ctx: RequestContext, error: LlmuxError): void {
  ctx.errorCode = error.code;
  if (!res.headersSent) {
    sendError(res, error);
  } else if (!res.writableEnded && !res.destroyed) {
    res.end(sseErrorFrame(error));
  }
}

/** Reads a non-stream answer whole (bounded), then relays it or its decoded error. */
async function relayBuffered(
  input: AttemptInput,
  response: Dispatcher.ResponseData,
  type: string,
  controller: AbortController,
): Promise<AttemptOutcome> {
  const { res, ctx, settings } = input;
  const status = response.statusCode;
  let raw: Buffer;
  try {
    raw = await collect(response.body, settings.maxResponseBytes, controller);
  } catch (err) {
    return answerTransportFailure(res, ctx, err, controller.signal.aborted && res.destroyed, false);
  }
  if (status < 200 || status >= 300) {
    const retryAfterMs = parseRetryAfterMs(response.headers);
    const decoded = decodeUpstreamError(status, raw, toRetryAfterSeconds(retryAfterMs));
    endWithError(res, ctx, decoded.error);
    return failed(decoded.category, status, retryAfterMs);
  }
  // Every answer of an OpenAI route is a JSON object: anything else (an HTML page from a wrong
  // base URL, an empty body) is a decode error, never a success.
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) {
    endWithError(res, ctx, errors.upstreamDecode(status));
    return failed('decode', status);
  }
  const errorField = (parsed as { error?: unknown }).error;
  if (errorField !== undefined && errorField !== null) {
    const decoded = decodeUpstreamErrorObject(status, errorField);
    endWithError(res, ctx, decoded.error);
    return failed(decoded.category, status);
  }
  const usage = readUsage((parsed as { usage?: unknown }).usage);
  if (usage !== undefined) ctx.usage = usage;
  if (res.destroyed) return OK;
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', raw.length);
  ctx.firstByteAt = performance.now();
  res.end(raw);
  return OK;
}

/** Reads a body into one Buffer, failing (and aborting the upstream) past `maxBytes`. */
function collect(
  body: Dispatcher.ResponseData['body'],
  maxBytes: number,
  controller: AbortController,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        controller.abort();
        body.destroy();
        reject(errors.upstreamTooLarge(maxBytes));
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

function ignore(): void {}

/**
 * Relays an SSE answer event by event. Headers go out with the first event, so an upstream that
 * opens with an error frame still gets a proper HTTP error. Backpressure pauses the upstream.
 */
class SseRelay implements SseVisitor {
  private readonly splitter: SseSplitter;
  private outcome: AttemptOutcome = OK;
  private sawDone = false;
  private finished = false;
  private resolve!: (outcome: AttemptOutcome) => void;

  constructor(
    private readonly input: AttemptInput,
    private readonly response: Dispatcher.ResponseData,
    private readonly controller: AbortController,
  ) {
    this.splitter = new SseSplitter(input.settings.maxEventBytes);
  }

  run(): Promise<AttemptOutcome> {
    const body = this.response.body;
    return new Promise<AttemptOutcome>((resolve) => {
      this.resolve = resolve;
      body.on('data', this.onData);
      body.on('end', this.onEnd);
      body.on('error', this.onError);
      this.input.res.on('drain', this.onDrain);
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.finished) return;
    const res = this.input.res;
    if (res.headersSent) res.cork();
    const fits = this.splitter.push(chunk, this);
    if (res.headersSent) res.uncork();
    if (!fits && !this.finished) {
      this.fail(
        new LlmuxError('upstream sent an SSE event above the size limit', {
          status: 502,
          type: 'upstream_error',
          code: 'upstream_response_too_large',
        }),
        failed('decode'),
      );
      return;
    }
    if (!this.finished && res.writableNeedDrain) this.response.body.pause();
  };

  private readonly onDrain = (): void => {
    if (!this.finished) this.response.body.resume();
  };

  private readonly onEnd = (): void => {
    if (this.finished) return;
    if (this.sawDone) {
      this.finish(OK);
      const res = this.input.res;
      if (!res.headersSent) this.startResponse();
      res.end();
      return;
    }
    this.fail(errors.upstreamTruncated(), failed('network'));
  };

  private readonly onError = (err: Error): void => {
    if (this.finished) return;
    if (this.controller.signal.aborted && this.input.res.destroyed) {
      this.input.ctx.errorCode = 'client_closed';
      this.finish(failed('network'));
      return;
    }
    this.finish(
      answerTransportFailure(this.input.res, this.input.ctx, err, false, this.input.res.headersSent),
    );
  };

  onEvent(
    frame: Buffer,
    start: number,
    end: number,
    data: string | undefined,
    event: string | undefined,
  ): void {
    if (this.finished) return;
    const ctx = this.input.ctx;
    if (data !== undefined) {
      if (data === '[DONE]') {
        this.sawDone = true;
      } else if (
        (event === 'error' || data.includes('"error"')) &&
        this.readErrorFrame(data, event === 'error')
      ) {
        return;
      } else {
        ctx.streamedChunks++;
        if (usageObjectIndex(data) !== -1 && this.readUsageChunk(data)) return;
      }
    }
    const res = this.input.res;
    if (!res.headersSent) this.startResponse();
    if (!res.destroyed) res.write(frame.subarray(start, end));
  }

  /** True when the frame was an error and the stream was ended. */
  private readErrorFrame(data: string, isErrorEvent: boolean): boolean {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      if (!isErrorEvent) return false;
      parsed = { error: { message: 'upstream stream error' } };
    }
    const errorField = (parsed as { error?: unknown } | null)?.error ?? (isErrorEvent ? parsed : undefined);
    if (errorField === undefined || errorField === null) return false;
    const decoded = decodeUpstreamErrorObject(this.response.statusCode, errorField);
    this.fail(decoded.error, failed(decoded.category, this.response.statusCode));
    return true;
  }

  /** Records usage; true when the chunk is the usage-only one the client did not ask for. */
  private readUsageChunk(data: string): boolean {
    let parsed: { usage?: unknown; choices?: unknown };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      return false;
    }
    const usage = readUsage(parsed.usage);
    if (usage !== undefined) this.input.ctx.usage = usage;
    return (
      this.input.hideUsageChunk &&
      usage !== undefined &&
      Array.isArray(parsed.choices) &&
      parsed.choices.length === 0
    );
  }

  private startResponse(): void {
    const { res, ctx } = this.input;
    res.statusCode = this.response.statusCode;
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    ctx.firstByteAt = performance.now();
  }

  private fail(error: LlmuxError, outcome: AttemptOutcome): void {
    const { res, ctx } = this.input;
    this.finish(outcome);
    // Stop the upstream: nothing after an error or a truncation is relayed.
    this.controller.abort();
    endWithError(res, ctx, error);
  }

  private finish(outcome: AttemptOutcome): void {
    this.finished = true;
    this.outcome = outcome;
    const body = this.response.body;
    body.off('data', this.onData);
    body.off('end', this.onEnd);
    body.off('error', this.onError);
    body.on('error', ignore);
    this.input.res.off('drain', this.onDrain);
    if (!body.destroyed && !this.sawDone) body.destroy();
    this.resolve(this.outcome);
  }
}
