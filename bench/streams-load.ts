// One streamed chat completion of the many-stream benchmark, sent over undici's dispatch() (no
// Readable per response: the generator must hold thousands at once) and checked chunk by chunk:
// every content chunk `tok<i>` in order, then `data: [DONE]`; the gap between content chunks goes
// into a histogram. Used by the generator children (bench/streams-client.ts) and the warm-up.
import type { Dispatcher } from 'undici';

/** The histogram's bucket width: gaps are recorded to 50 µs. */
const BUCKET_US = 50;
/** Values above this (60 s) land in one overflow bucket, reported as the largest value seen. */
const MAX_US = 60_000_000;

/** A histogram as it crosses IPC: the non-empty buckets only. */
export interface HistogramData {
  /** `[bucket index, count]` pairs. */
  buckets: [number, number][];
  count: number;
  maxUs: number;
  sumUs: number;
}

/** Fixed-width buckets of µs values, cheap to record into and to merge across processes. */
export class Histogram {
  count = 0;
  maxUs = 0;
  sumUs = 0;
  private readonly counts = new Uint32Array(MAX_US / BUCKET_US + 1);

  record(us: number): void {
    const value = us < 0 ? 0 : us;
    this.counts[Math.min(MAX_US / BUCKET_US, Math.floor(value / BUCKET_US))]!++;
    this.count++;
    this.sumUs += value;
    if (value > this.maxUs) this.maxUs = value;
  }

  /** Adds another histogram's counts (from {@link Histogram.toData}). */
  merge(data: HistogramData): void {
    for (const [index, count] of data.buckets) this.counts[index]! += count;
    this.count += data.count;
    this.sumUs += data.sumUs;
    if (data.maxUs > this.maxUs) this.maxUs = data.maxUs;
  }

  /** The p-th percentile in µs (the bucket's middle, or the largest value in the overflow bucket). */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let index = 0; index < this.counts.length; index++) {
      seen += this.counts[index]!;
      if (seen >= rank) {
        return index === MAX_US / BUCKET_US ? this.maxUs : Math.min(this.maxUs, (index + 0.5) * BUCKET_US);
      }
    }
    return this.maxUs;
  }

  toData(): HistogramData {
    const buckets: [number, number][] = [];
    this.counts.forEach((count, index) => {
      if (count > 0) buckets.push([index, count]);
    });
    return { buckets, count: this.count, maxUs: this.maxUs, sumUs: this.sumUs };
  }
}

/** How a stream ended. */
export type StreamOutcome = 'ok' | 'status' | 'error' | 'incomplete' | 'order' | 'timeout';
export const FAILURE_KINDS = ['status', 'error', 'incomplete', 'order', 'timeout'] as const;

/** Where the measurements of a stream go (shared by every stream of a process). */
export interface StreamSink {
  /** Gaps between consecutive content chunks, µs, as the client read them. */
  readonly gaps: Histogram;
  /** From sending the request to the first content chunk, µs. */
  readonly firstChunks: Histogram;
  /** Content chunks received, all streams together. */
  chunks: number;
  /** Streams that received their first content chunk and have not ended. */
  flowing: number;
  /** Called once per stream; `detail` says what went wrong when it did not end `ok`. */
  ended(outcome: StreamOutcome, detail: string): void;
}

/** The request of a stream: the path and method are fixed (POST /v1/chat/completions). */
export interface StreamRequest {
  body: string;
  headers: Record<string, string>;
  /** Content chunks the answer must carry. */
  chunks: number;
}

const CONTENT_FIELD = '"content":"tok';
const DONE_FRAME = 'data: [DONE]';
const ERROR_FIELD = '"error":';
const FRAME_END = '\n\n';
const CHAR_0 = 48;
const CHAR_9 = 57;

/** One stream in flight: an undici dispatch handler that checks every frame as it arrives. */
export class CheckedStream implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private status = 0;
  private carry = '';
  private next = 0;
  private done = false;
  private startedAt = 0;
  private lastChunkAt = 0;
  private failure: StreamOutcome | undefined = undefined;
  private detail = '';
  private finished = false;

  constructor(
    private readonly request: StreamRequest,
    private readonly sink: StreamSink,
  ) {}

  /** True once the stream ended, however it did. */
  get isFinished(): boolean {
    return this.finished;
  }

  /** Sends the request on `dispatcher` now. */
  send(dispatcher: Dispatcher): void {
    this.startedAt = performance.now();
    dispatcher.dispatch(
      {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: this.request.headers,
        body: this.request.body,
      },
      this,
    );
  }

  /** Ends the stream as timed out (the server is not answering within the run's bound). */
  timeOut(): void {
    if (this.finished) return;
    this.fail('timeout', `no end after ${((performance.now() - this.startedAt) / 1_000).toFixed(1)} s`);
    this.controller?.abort(new Error('stream timed out'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number): void {
    this.status = statusCode;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.finished) return;
    const now = performance.now();
    const text = this.carry + chunk.toString('latin1');
    if (this.status !== 200) {
      this.carry = text.slice(0, 300);
      return;
    }
    let start = 0;
    for (let end = text.indexOf(FRAME_END); end !== -1; end = text.indexOf(FRAME_END, start)) {
      this.frame(text, start, end, now);
      start = end + FRAME_END.length;
    }
    this.carry = start === 0 ? text : text.slice(start);
  }

  onResponseEnd(): void {
    if (this.finished) return;
    if (this.status !== 200) return this.fail('status', `status ${this.status}: ${this.carry}`);
    if (this.failure !== undefined) return this.end(this.failure);
    if (this.next !== this.request.chunks || !this.done) {
      return this.fail(
        'incomplete',
        `${this.next}/${this.request.chunks} content chunks, [DONE] ${this.done}, tail ${JSON.stringify(this.carry.slice(0, 120))}`,
      );
    }
    this.end('ok');
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.finished) return;
    this.fail('error', `${(error as { code?: string }).code ?? error.name}: ${error.message}`);
  }

  private frame(text: string, start: number, end: number, now: number): void {
    if (this.failure !== undefined) return;
    if (text.startsWith(DONE_FRAME, start)) {
      this.done = true;
      return;
    }
    if (this.done) return this.mark('order', 'a frame after [DONE]');
    const at = text.indexOf(CONTENT_FIELD, start);
    if (at === -1 || at > end) {
      const error = text.indexOf(ERROR_FIELD, start);
      if (error !== -1 && error < end)
        this.mark('error', `error frame: ${text.slice(start, end).slice(0, 200)}`);
      return;
    }
    let index = 0;
    let digit = at + CONTENT_FIELD.length;
    for (
      let code = text.charCodeAt(digit);
      code >= CHAR_0 && code <= CHAR_9;
      code = text.charCodeAt(++digit)
    ) {
      index = index * 10 + code - CHAR_0;
    }
    if (index !== this.next) return this.mark('order', `chunk tok${index} where tok${this.next} was due`);
    if (this.next === 0) {
      this.sink.firstChunks.record((now - this.startedAt) * 1_000);
      this.sink.flowing++;
    } else this.sink.gaps.record((now - this.lastChunkAt) * 1_000);
    this.lastChunkAt = now;
    this.next++;
    this.sink.chunks++;
  }

  /** Remembers the first problem; the stream is judged when it ends. */
  private mark(outcome: StreamOutcome, detail: string): void {
    this.failure = outcome;
    this.detail = detail;
  }

  private fail(outcome: StreamOutcome, detail: string): void {
    if (this.failure === undefined) this.mark(outcome, detail);
    this.end(this.failure ?? outcome);
  }

  private end(outcome: StreamOutcome): void {
    this.finished = true;
    if (this.next > 0) this.sink.flowing--;
    this.sink.ended(outcome, this.detail);
  }
}
