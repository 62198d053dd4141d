// The timed SSE writer shared by every protocol: it writes a protocol's frames chunk by chunk with
// the behaviour's delays, stalls, resets and error frame, and waits for 'drain' under backpressure.
import type { Socket } from 'node:net';
import type { ResolvedBehaviour } from './behaviour.js';
import type { MockResponse } from './http-classes.js';

/** The frames of one streamed answer, in a protocol's own wire format. */
export interface SseScript {
  /** Frames sent with the headers, before the first content chunk (e.g. `message_start`); `''` for none. */
  head(): string;
  /** The frame(s) of content chunk `index` (0-based). */
  chunk(index: number): string;
  /** The frames after the last chunk: finish, usage, terminal event; the script honours `omitDone`/`omitUsage`. */
  tail(): string;
  /** The frame that `errorFrameAfterChunks` sends before the mock ends the response. */
  errorFrame(): string;
}

function onWriterTimer(writer: SseWriter): void {
  writer.onTimer();
}

function onResponseDrain(this: MockResponse): void {
  this.writer?.step();
}

function destroyThisSocket(this: Socket): void {
  this.destroy();
}

/** Streams one answer; the exchange stops it when it settles or the mock closes. */
export class SseWriter {
  /** True once the writer cut the socket on purpose (`resetAfterChunks`): not a client abort. */
  resetByMock = false;
  private timer: NodeJS.Timeout | undefined = undefined;
  private sent = 0;
  private delayElapsed = false;
  private stalled = false;
  private stopped = false;

  constructor(
    private readonly res: MockResponse,
    private readonly behaviour: ResolvedBehaviour,
    private readonly script: SseScript,
  ) {}

  /** Writes the head (the headers are already written) and runs until the first pause. */
  start(): void {
    this.res.writer = this;
    const head = this.script.head();
    if (head !== '' && !this.res.write(head)) {
      this.res.once('drain', onResponseDrain);
      return;
    }
    this.step();
  }

  /** Writes content chunks until a delay, backpressure, an interruption or the end of the stream. */
  step(): void {
    const behaviour = this.behaviour;
    while (!this.stopped) {
      if (this.sent === behaviour.resetAfterChunks) {
        this.resetByMock = true;
        this.stopped = true;
        const socket = this.res.req.socket;
        socket.end(); // flushes what was written, then the socket goes
        if (socket.writableFinished) socket.destroy();
        else socket.once('finish', destroyThisSocket);
        return;
      }
      if (this.sent === behaviour.errorFrameAfterChunks) {
        this.stopped = true;
        this.res.end(this.script.errorFrame());
        return;
      }
      if (this.sent === behaviour.stallAfterChunks && !this.stalled) {
        this.stalled = true;
        if (behaviour.stallMs >= 0) this.schedule(behaviour.stallMs);
        return; // a stall without end waits for the client to leave or close()
      }
      if (this.sent === behaviour.chunks) {
        this.stopped = true;
        this.res.end(this.script.tail());
        return;
      }
      if (behaviour.chunkDelayMs > 0 && !this.delayElapsed) {
        this.delayElapsed = true;
        this.schedule(behaviour.chunkDelayMs);
        return;
      }
      this.delayElapsed = false;
      const flushed = this.res.write(this.script.chunk(this.sent));
      this.sent++;
      if (!flushed) {
        this.res.once('drain', onResponseDrain);
        return;
      }
    }
  }

  onTimer(): void {
    this.timer = undefined;
    this.step();
  }

  /** Stops writing and clears the pending timer and drain listener; safe to call twice. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.res.removeListener('drain', onResponseDrain);
    this.res.writer = undefined;
  }

  private schedule(delayMs: number): void {
    // Deliberately not unref'd: it lives only while the request's socket (which holds the loop) is open,
    // and a ref'd timer shows up in process.getActiveResourcesInfo() for leak checks.
    this.timer = setTimeout(onWriterTimer, delayMs, this);
  }
}
