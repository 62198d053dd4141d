// A load generator child of the many-stream benchmark (bench/streams.ts): on `run` it opens its share
// of the level's streams on one undici Pool (a connection each), each at its scheduled time, checks
// every chunk of every stream (bench/streams-load.ts), answers `count` at once and `result` once every
// stream ended. It exits when the parent goes away.
import { Pool } from 'undici';
import type { ClientCount, ClientRequest, ClientResult, RunRequest } from './streams-config.js';
import { CheckedStream, Histogram, type StreamOutcome, type StreamSink } from './streams-load.js';

const KEEP_ALIVE_MS = 60_000;
const CONNECT_TIMEOUT_MS = 30_000;
/** Failures kept word for word for the report. */
const MAX_FAILURES_KEPT = 5;
/** How often streams past their deadline are looked for. */
const SWEEP_MS = 1_000;

class Run implements StreamSink {
  readonly gaps = new Histogram();
  readonly firstChunks = new Histogram();
  chunks = 0;
  flowing = 0;
  private readonly outcomes: Record<StreamOutcome, number> = {
    ok: 0,
    status: 0,
    error: 0,
    incomplete: 0,
    order: 0,
    timeout: 0,
  };
  private readonly failures: string[] = [];
  private readonly pool: Pool;
  private readonly open = new Map<CheckedStream, number>();
  private sent = 0;
  private endedCount = 0;
  private readonly sweeper: NodeJS.Timeout;
  private readonly finished: Promise<void>;
  private onFinished: () => void = () => {};

  constructor(private readonly request: RunRequest) {
    const streams = request.offsetsMs.length;
    this.pool = new Pool(request.url, {
      connections: Math.max(1, streams),
      pipelining: 1,
      keepAliveTimeout: KEEP_ALIVE_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      headersTimeout: request.timeoutMs,
      bodyTimeout: request.timeoutMs,
    });
    this.finished = new Promise((resolve) => (this.onFinished = resolve));
    if (streams === 0) this.onFinished();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.launch();
  }

  ended(outcome: StreamOutcome, detail: string): void {
    this.outcomes[outcome]++;
    if (outcome !== 'ok' && this.failures.length < MAX_FAILURES_KEPT)
      this.failures.push(`${outcome}: ${detail}`);
    if (++this.endedCount === this.request.offsetsMs.length) this.onFinished();
  }

  count(): ClientCount {
    return { chunks: this.chunks, open: this.sent - this.endedCount, flowing: this.flowing };
  }

  async result(): Promise<ClientResult> {
    await this.finished;
    clearInterval(this.sweeper);
    await this.pool.destroy();
    return {
      streams: this.request.offsetsMs.length,
      outcomes: this.outcomes,
      failures: this.failures,
      chunks: this.chunks,
      gaps: this.gaps.toData(),
      firstChunks: this.firstChunks.toData(),
    };
  }

  /** Sends every stream whose time has come, then waits for the next one's. */
  private launch(): void {
    const { startAtMs, offsetsMs } = this.request;
    const now = Date.now();
    while (this.sent < offsetsMs.length && startAtMs + offsetsMs[this.sent]! <= now) {
      const stream = new CheckedStream(this.request, this);
      this.open.set(stream, performance.now() + this.request.timeoutMs);
      this.sent++;
      stream.send(this.pool);
    }
    if (this.sent < offsetsMs.length) {
      setTimeout(() => this.launch(), Math.max(1, startAtMs + offsetsMs[this.sent]! - now));
    }
  }

  private sweep(): void {
    const now = performance.now();
    for (const [stream, deadline] of this.open) {
      if (stream.isFinished) this.open.delete(stream);
      else if (now > deadline) {
        this.open.delete(stream);
        stream.timeOut();
      }
    }
  }
}

let run: Run | undefined;

process.on('message', (msg: ClientRequest) => {
  if (msg.type === 'run') {
    run = new Run(msg);
    process.send?.({ type: 'running' });
  } else if (msg.type === 'count') {
    process.send?.(run?.count() ?? { chunks: 0, open: 0, flowing: 0 });
  } else if (run !== undefined) {
    run.result().then(
      (result) => process.send?.(result),
      (err: unknown) => {
        process.stderr.write(`streams-client: ${String((err as Error)?.stack ?? err)}\n`);
        process.exit(1);
      },
    );
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({});
