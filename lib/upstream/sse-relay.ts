// Relays an SSE answer event by event, with backpressure, reading usage and upstream error
// frames; only whole events are forwarded, batched into one write per upstream read.
import { writeAnswerHeaders } from './answer-headers.js';
import type { Dispatcher } from 'undici';
import { errors, llmuxError, type LlmuxError } from '../errors/llmux-error.js';
import { decodeUpstreamErrorObject } from '../errors/upstream.js';
import { watchDrain, watchFinish } from './client-stall.js';
import { COST_HEADER, formatUsd } from './cost-header.js';
import {
  answered,
  cutStalledClient,
  failed,
  failure,
  ignore,
  OK,
  transportFailure,
  type AttemptInput,
  type AttemptResult,
} from './attempt.js';
import type { AttemptOutcome } from './source.js';
import { SseSplitter, type SseVisitor } from './sse.js';
import type { StreamReader } from '../protocol/types.js';

/**
 * Relays an SSE answer event by event. Headers go out with the first event, so an upstream that
 * opens with an error frame still gets a proper HTTP error. Backpressure pauses the upstream.
 */
export class SseRelay implements SseVisitor {
  private readonly splitter: SseSplitter;
  /** The protocol's reader: usage, error events, and whether the stream ended complete. */
  private readonly reader: StreamReader;
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
  /** Cancels the watch on a paused client, while one runs. */
  private cancelStallWatch: (() => void) | undefined = undefined;
  private resolve!: (result: AttemptResult) => void;

  constructor(
    private readonly input: AttemptInput,
    private readonly response: Dispatcher.ResponseData,
    private readonly controller: AbortController,
  ) {
    this.splitter = new SseSplitter(input.settings.maxEventBytes);
    this.reader = input.ctx.protocol.streamReader(input.ctx, input.hideUsage);
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
    this.cancelStallWatch?.();
    this.cancelStallWatch = undefined;
    if (!this.finished) this.response.body.resume();
  };

  /** The client left what was written unread for `clientStallTimeoutMs`: cut it, free the upstream. */
  private readonly onClientStalled = (): void => {
    this.cancelStallWatch = undefined;
    if (this.finished) return;
    const { res, ctx } = this.input;
    this.fail(llmuxError('client_stalled'), failed('cancelled'));
    cutStalledClient(res, ctx);
  };

  private readonly onEnd = (): void => {
    if (this.finished) return;
    if (this.reader.complete) {
      const { res, ctx } = this.input;
      this.flush();
      if (!this.started) this.startResponse();
      if (ctx.priceUsage !== undefined && ctx.usage !== undefined) {
        // The cost, once the usage is known: a comment SSE parsers skip, and a trailer.
        const cost = formatUsd(ctx.priceUsage(ctx.usage));
        res.write(`: ${COST_HEADER} ${cost}\n\n`);
        res.addTrailers({ [COST_HEADER]: cost });
      }
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
    const verdict = this.reader.read(data, event);
    if (verdict === 'drop') return;
    if (verdict !== 'relay') {
      const decoded = decodeUpstreamErrorObject(this.response.statusCode, verdict.upstreamError);
      this.fail(decoded.error, failed(decoded.category, decoded.status));
      return;
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
    if (!this.finished && res.writableNeedDrain) {
      this.response.body.pause();
      this.cancelStallWatch ??= watchDrain(
        res,
        this.input.settings.clientStallTimeoutMs,
        this.onClientStalled,
      );
    }
  }

  private startResponse(): void {
    const { res, ctx } = this.input;
    this.started = true;
    res.statusCode = this.response.statusCode;
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    writeAnswerHeaders(res, ctx, this.response.headers, this.input.settings.responseHeaders);
    if (ctx.priceUsage !== undefined) res.setHeader('Trailer', COST_HEADER);
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
    this.cancelStallWatch?.();
    this.cancelStallWatch = undefined;
    if (!body.destroyed && !this.reader.complete) body.destroy();
    // An ended stream (whole, or closed by an error frame) still waits for its client to read
    // the rest: bounded like any other write, so a client that stopped reading cannot keep the
    // request (its permit, its reservation) open. A no-op once finished or gone.
    const { res, ctx, settings } = this.input;
    if (res.writableEnded) watchFinish(res, settings.clientStallTimeoutMs, () => cutStalledClient(res, ctx));
    this.resolve(result);
  }
}
