// One upstream attempt: sends the request, then relays the JSON or SSE answer to the client,
// reading usage and upstream errors. Every listener and the AbortController end with it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher, Pool } from 'undici';
import type { RequestContext } from '../context.js';
import { errors, LlmuxError, sendError, sseErrorFrame, llmuxError } from '../errors/llmux-error.js';
import {
  decodeUpstreamError,
  decodeUpstreamErrorObject,
  type UpstreamErrorCategory,
} from '../errors/upstream.js';
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
  /** Aborts when the client leaves; every attempt listens to it. */
  clientSignal: AbortSignal;
  /** This try's first-byte timeout when shorter than the setting (a retry deadline). */
  headersTimeoutMs?: number;
  settings: AttemptSettings;
}

const OK: AttemptOutcome = { ok: true };

function failed(category: UpstreamErrorCategory, status?: number, retryAfterMs?: number): AttemptOutcome {
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

const CLIENT_LEFT: AttemptResult = { outcome: failed('cancelled'), unsent: undefined, network: false };

function answered(outcome: AttemptOutcome): AttemptResult {
  return { outcome, unsent: undefined, network: false };
}

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

/** Distinguishes a response from a failed attempt. */
export function isResponse(value: Dispatcher.ResponseData | AttemptResult): value is Dispatcher.ResponseData {
  return (value as Dispatcher.ResponseData).statusCode !== undefined;
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

/**
 * Maps a failure of the upstream exchange to its error. Before anything reached the client the
 * error is handed back unsent; after, the stream ends with an SSE error frame.
 */
function transportFailure(input: AttemptInput, err: unknown, aborted: boolean): AttemptResult {
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
    category = 'decode';
  } else {
    error = res.headersSent ? errors.upstreamTruncated() : errors.upstreamUnreachable(err);
    category = 'network';
  }
  return failure(res, ctx, error, failed(category), category === 'network');
}

/** A failed attempt: sent as an SSE frame when the stream started, else handed back unsent. */
function failure(
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
    res.end(sseErrorFrame(error));
  }
}

/** Reads a non-stream answer whole (bounded), then relays it or hands back its decoded error. */
async function relayBuffered(
  input: AttemptInput,
  response: Dispatcher.ResponseData,
  controller: AbortController,
): Promise<AttemptResult> {
  const { res, ctx, settings } = input;
  const status = response.statusCode;
  let raw: Buffer;
  try {
    raw = await collect(response.body, settings.maxResponseBytes, controller);
  } catch (err) {
    return transportFailure(input, err, controller.signal.aborted);
  }
  if (status < 200 || status >= 300) {
    const retryAfterMs = parseRetryAfterMs(response.headers);
    const decoded = decodeUpstreamError(status, raw, toRetryAfterSeconds(retryAfterMs));
    return failure(res, ctx, decoded.error, failed(decoded.category, status, retryAfterMs));
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
    return failure(res, ctx, errors.upstreamDecode(status), failed('decode', status));
  }
  const errorField = (parsed as { error?: unknown }).error;
  if (errorField !== undefined && errorField !== null) {
    const decoded = decodeUpstreamErrorObject(status, errorField);
    return failure(res, ctx, decoded.error, failed(decoded.category, status));
  }
  const usage = readUsage((parsed as { usage?: unknown }).usage);
  if (usage !== undefined) ctx.usage = usage;
  if (res.destroyed) return CLIENT_LEFT;
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', raw.length);
  ctx.firstByteAt = performance.now();
  res.end(raw);
  return answered(OK);
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
  private sawDone = false;
  private finished = false;
  private started = false;
  /**
   * What to relay is gathered, not written event by event: back-to-back events of one buffer as
   * a run, runs in `batch`, written as one `res.write` (one chunked-encoding frame, one syscall)
   * on the next tick — everything one socket read of the upstream delivered — or before the
   * response ends. A write per event cost a syscall per event (BENCHMARKS.md, SSE).
   */
  private runFrame: Buffer | undefined = undefined;
  private runStart = 0;
  private runEnd = 0;
  private readonly batch: Buffer[] = [];
  private flushScheduled = false;
  private resolve!: (result: AttemptResult) => void;

  constructor(
    private readonly input: AttemptInput,
    private readonly response: Dispatcher.ResponseData,
    private readonly controller: AbortController,
  ) {
    this.splitter = new SseSplitter(input.settings.maxEventBytes);
  }

  run(): Promise<AttemptResult> {
    const body = this.response.body;
    return new Promise<AttemptResult>((resolve) => {
      this.resolve = resolve;
      body.on('data', this.onData);
      body.on('end', this.onEnd);
      body.on('error', this.onError);
      this.input.res.on('drain', this.onDrain);
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.finished) return;
    const fits = this.splitter.push(chunk, this);
    this.sealRun();
    if (!fits && !this.finished) {
      this.fail(
        llmuxError('upstream_response_too_large', {
          message: 'upstream sent an SSE event above the size limit',
        }),
        failed('decode'),
      );
      return;
    }
    if (!this.flushScheduled && this.batch.length > 0) {
      this.flushScheduled = true;
      process.nextTick(this.onTick);
    }
  };

  private readonly onTick = (): void => {
    this.flushScheduled = false;
    if (!this.finished) this.flush();
  };

  private readonly onDrain = (): void => {
    if (!this.finished) this.response.body.resume();
  };

  private readonly onEnd = (): void => {
    if (this.finished) return;
    if (this.sawDone) {
      const res = this.input.res;
      this.flush();
      if (!this.started) this.startResponse();
      res.end();
      this.finish(answered(OK));
      return;
    }
    this.fail(errors.upstreamTruncated(), failed('network'));
  };

  private readonly onError = (err: Error): void => {
    if (this.finished) return;
    this.flush();
    this.finish(transportFailure(this.input, err, this.controller.signal.aborted));
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
    if (!this.started) this.startResponse();
    if (this.runFrame === frame && this.runEnd === start) {
      this.runEnd = end;
      return;
    }
    this.sealRun();
    this.runFrame = frame;
    this.runStart = start;
    this.runEnd = end;
  }

  /** Adds the pending run of events to the batch. */
  private sealRun(): void {
    const frame = this.runFrame;
    if (frame === undefined) return;
    this.runFrame = undefined;
    this.batch.push(frame.subarray(this.runStart, this.runEnd));
  }

  /** Writes everything gathered in one write; pauses the upstream when the client is behind. */
  private flush(): void {
    this.sealRun();
    const batch = this.batch;
    if (batch.length === 0) return;
    const bytes = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
    batch.length = 0;
    const res = this.input.res;
    if (res.destroyed) return;
    res.write(bytes);
    if (!this.finished && res.writableNeedDrain) this.response.body.pause();
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
    this.started = true;
    res.statusCode = this.response.statusCode;
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    ctx.firstByteAt = performance.now();
  }

  private fail(error: LlmuxError, outcome: AttemptOutcome): void {
    const { res, ctx } = this.input;
    // Events before the failure reach the client before its error frame.
    this.flush();
    // Stop the upstream: nothing after an error or a truncation is relayed.
    this.controller.abort();
    this.finish(failure(res, ctx, error, outcome, outcome.ok === false && outcome.category === 'network'));
  }

  private finish(result: AttemptResult): void {
    this.finished = true;
    const body = this.response.body;
    body.off('data', this.onData);
    body.off('end', this.onEnd);
    body.off('error', this.onError);
    body.on('error', ignore);
    this.input.res.off('drain', this.onDrain);
    if (!body.destroyed && !this.sawDone) body.destroy();
    this.resolve(result);
  }
}
