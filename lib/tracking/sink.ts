// The usage sink: request records go into a bounded buffer and one long-lived worker writes them
// out in batches, woken by a full batch or a timer, retrying a failed batch with backoff.
import { OptionReader } from '../options.js';
import { stderrLogger, type Logger } from '../log.js';
import { redactSecrets } from '../redact.js';
import type { RequestRecord } from './record.js';

/** Longest delay `setTimeout` honours. */
/** `scheme://user:password@` in a connection string a database error may quote. */
const URL_CREDENTIALS = /\/\/[^/\s:@]+:[^/\s@]+@/g;

/** Options every {@link UsageSink} takes. */
export interface UsageSinkOptions {
  /**
   * Records per write to the target; the worker is woken as soon as this many are buffered.
   * Positive integer, at most `maxBuffered`.
   * @defaultValue 100
   */
  batchSize?: number;
  /**
   * Most records held in memory. Past it, the oldest record not being written right now is
   * dropped and counted in `stats().dropped`. Positive integer.
   * @defaultValue 10_000
   */
  maxBuffered?: number;
  /**
   * Longest time a record waits for a batch to fill, in ms: a smaller batch is written when it
   * passes. Positive integer.
   * @defaultValue 1_000
   */
  flushIntervalMs?: number;
  /**
   * Wait after the first failed write of a batch, in ms; doubled after each further failure in a
   * row. Positive integer.
   * @defaultValue 100
   */
  retryBaseMs?: number;
  /**
   * Longest wait between two attempts at a failing batch, in ms. Positive integer, at least
   * `retryBaseMs`.
   * @defaultValue 30_000
   */
  retryMaxMs?: number;
  /**
   * Longest time `close()` waits for the last writes, in ms. Records not written by then are
   * counted as dropped. Positive integer.
   * @defaultValue 5_000
   */
  closeTimeoutMs?: number;
  /**
   * Receives one event per failed write (with the batch size and the retry delay, never the
   * records). Default: a JSON line on stderr.
   */
  logger?: Logger;
}

/** Counters of a {@link UsageSink}; see {@link UsageSink.stats}. */
export interface UsageSinkStats {
  /** Records held now, including a batch being written or waiting for a retry. */
  buffered: number;
  /** Records lost: overflow of the buffer, writes after `close()`, and what `close()` could not write. */
  dropped: number;
  /** Records written to the target. */
  flushed: number;
  /** Write attempts that failed (each retry counts). */
  failures: number;
}

/** {@link UsageSinkOptions} with the defaults filled in and checked. */
interface UsageSinkSettings {
  batchSize: number;
  maxBuffered: number;
  flushIntervalMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  closeTimeoutMs: number;
  logger: Logger;
}

/** What the worker is waiting for, which decides whether a write wakes it. */
type WaitKind = 'records' | 'batch' | 'backoff';

/**
 * Stores {@link RequestRecord}s somewhere durable without ever slowing a request. `write()` is
 * synchronous and cheap: it appends to a bounded buffer (the oldest record is dropped and counted
 * when it is full) and, at most, resolves a signal. One worker loop, started by the first
 * `write()`, does all the writing, one batch at a time, so the target never sees two writes at
 * once and no task is created per record. The worker wakes when `batchSize` records are
 * buffered or `flushIntervalMs` after the first record of a partial batch; it holds one unref'd
 * timer, only while it waits.
 *
 * A failed write keeps its batch at the head of the buffer and is tried again after
 * `retryBaseMs`, doubling up to `retryMaxMs`, so a target that recovers loses nothing that still
 * fits the buffer, and records reach it once each, in order. While the target is down, new records
 * still fill the buffer: past `maxBuffered` the oldest are dropped (those being written at that
 * moment excepted: they are the target's now).
 *
 * `close()` stops the worker and writes what is buffered: the remaining batches in turn, one
 * attempt each, within `closeTimeoutMs`. At the first failure, or when the time is up (the signal
 * passed to the target then aborts), what is left is counted as dropped. It may be called twice, concurrently or before any write: every call returns the same
 * promise, which never rejects. Writes after `close()` are dropped and counted.
 *
 * Subclasses implement {@link UsageSink.flushBatch}; see {@link JsonlFileSink} and
 * {@link CallbackSink}.
 *
 * @example
 * class StdoutSink extends UsageSink {
 *   protected async flushBatch(batch: RequestRecord[]): Promise<void> {
 *     process.stdout.write(batch.map((r) => JSON.stringify(r) + '\n').join(''));
 *   }
 * }
 * const sink = new StdoutSink({ batchSize: 500 });
 * sink.write(record);
 * await sink.close();
 */
export abstract class UsageSink {
  private readonly settings: UsageSinkSettings;
  /** Records not yet taken into a batch: a ring of `maxBuffered` slots. */
  private readonly ring: (RequestRecord | undefined)[];
  private ringHead = 0;
  private ringSize = 0;
  /** The batch at the head of the buffer (being written, or waiting for a retry) from `heldStart` on. */
  private held: RequestRecord[] = [];
  private heldStart = 0;
  /** True while `held` is in the target's hands; its records are then not dropped. */
  private writing = false;
  private dropped = 0;
  private flushed = 0;
  private failures = 0;
  private worker: Promise<void> | undefined;
  private waitKind: WaitKind | undefined;
  private wakeWorker: (() => void) | undefined;
  private waitTimer: NodeJS.Timeout | undefined;
  /** Set by `close()`: writes are refused and the worker writes what is left, then ends. */
  private closed = false;
  /** Set when `close()` gave up waiting: the worker must change nothing any more. */
  private abandoned = false;
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();

  /**
   * @param options - see {@link UsageSinkOptions}.
   * @param owner - the name TypeErrors about the options start with. Default: `UsageSink`.
   * @throws TypeError naming the option when an option is invalid.
   */
  protected constructor(options: UsageSinkOptions = {}, owner = 'UsageSink') {
    this.settings = resolveSettings(options, owner);
    this.ring = new Array<RequestRecord | undefined>(this.settings.maxBuffered).fill(undefined);
  }

  /**
   * Writes one batch to the target, oldest record first; rejects (or throws) when it was not
   * stored, and then gets the same records again on the retry. Called by the worker only, never
   * twice at once. `batch` is a fresh array the implementation may keep; `signal` aborts when
   * `close()` stops waiting.
   */
  protected abstract flushBatch(batch: RequestRecord[], signal: AbortSignal): Promise<void>;

  /**
   * Queues `record` for writing. Never blocks, never throws, never starts a task (the first call
   * starts the one worker). When the buffer is full the oldest record is dropped and counted;
   * after `close()` the record itself is.
   */
  write(record: RequestRecord): void {
    if (this.closed) {
      this.dropped++;
      return;
    }
    const { maxBuffered, batchSize } = this.settings;
    if (this.bufferedCount() >= maxBuffered && !this.dropOldest()) {
      // Every buffered record is in the target's hands: the newest is the one that cannot stay.
      this.dropped++;
      return;
    }
    this.ring[(this.ringHead + this.ringSize) % maxBuffered] = record;
    this.ringSize++;
    if (this.worker === undefined) {
      this.worker = this.run();
    } else if (
      this.waitKind === 'records' ||
      (this.waitKind === 'batch' && this.bufferedCount() >= batchSize)
    ) {
      this.wakeWorker?.();
    }
  }

  /** The sink's counters now. */
  stats(): UsageSinkStats {
    return {
      buffered: this.bufferedCount(),
      dropped: this.dropped,
      flushed: this.flushed,
      failures: this.failures,
    };
  }

  /**
   * Writes what is buffered (the remaining batches in turn, one attempt each, all within
   * `closeTimeoutMs`; what fails is counted as dropped), then stops the worker and its timer. Idempotent: every call returns the same promise, which
   * resolves (never rejects) once the sink is closed.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (worker === undefined) return;
    this.wakeWorker?.();
    let deadline: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => {
      deadline = setTimeout(resolve, this.settings.closeTimeoutMs, true);
      deadline.unref();
    });
    const gaveUp = await Promise.race([worker.then(() => false), timedOut]);
    clearTimeout(deadline);
    if (gaveUp) {
      this.abandoned = true;
      this.abort.abort(new Error(`usage sink closed after ${this.settings.closeTimeoutMs} ms`));
      this.dropped += this.bufferedCount();
      this.clearBuffer();
    }
  }

  /** The worker: one loop for the sink's life, so writes to the target never overlap. */
  private async run(): Promise<void> {
    // Leave the write() that started the worker before doing anything.
    await Promise.resolve();
    let failuresInARow = 0;
    while (!this.closed) {
      const buffered = this.bufferedCount();
      if (buffered === 0) {
        await this.wait('records', undefined);
        continue;
      }
      if (failuresInARow === 0 && buffered < this.settings.batchSize) {
        await this.wait('batch', this.settings.flushIntervalMs);
        if (this.closed) break;
      }
      if (await this.attempt(failuresInARow + 1)) {
        failuresInARow = 0;
      } else {
        failuresInARow++;
        await this.wait('backoff', this.backoffMs(failuresInARow));
      }
    }
    // Closing: every remaining batch gets one more attempt; what fails is lost and counted.
    while (!this.abandoned && this.bufferedCount() > 0) {
      if (!(await this.attempt(0))) {
        if (this.abandoned) return;
        this.dropped += this.bufferedCount();
        this.clearBuffer();
      }
    }
  }

  /**
   * Writes the head batch once. True when it was stored. `attemptNumber` is for the log: 0 for the
   * attempt made while closing.
   */
  private async attempt(attemptNumber: number): Promise<boolean> {
    // A copy per attempt: the target may keep or change the array it gets.
    const batch = this.topUpHeld().slice();
    const count = batch.length;
    this.writing = true;
    try {
      await this.flushBatch(batch, this.abort.signal);
    } catch (error) {
      this.writing = false;
      if (this.abandoned) return false;
      this.failures++;
      this.logFailure(error, count, attemptNumber);
      return false;
    }
    this.writing = false;
    if (this.abandoned) return true;
    this.flushed += count;
    this.held = [];
    this.heldStart = 0;
    return true;
  }

  /** The head batch, compacted and topped up from the ring to `batchSize`. */
  private topUpHeld(): RequestRecord[] {
    const { batchSize, maxBuffered } = this.settings;
    if (this.heldStart > 0) {
      this.held = this.held.slice(this.heldStart);
      this.heldStart = 0;
    }
    const held = this.held;
    const take = Math.min(batchSize - held.length, this.ringSize);
    for (let i = 0; i < take; i++) {
      held.push(this.ring[this.ringHead]!);
      this.ring[this.ringHead] = undefined;
      this.ringHead = (this.ringHead + 1) % maxBuffered;
    }
    this.ringSize -= take;
    return held;
  }

  /**
   * Drops the oldest record the target does not hold right now: the head of a batch waiting for
   * its retry, else the head of the ring. False when every buffered record is being written.
   */
  private dropOldest(): boolean {
    if (!this.writing && this.heldStart < this.held.length) {
      this.heldStart++;
    } else if (this.ringSize > 0) {
      this.ring[this.ringHead] = undefined;
      this.ringHead = (this.ringHead + 1) % this.settings.maxBuffered;
      this.ringSize--;
    } else {
      return false;
    }
    this.dropped++;
    return true;
  }

  private bufferedCount(): number {
    return this.ringSize + this.held.length - this.heldStart;
  }

  private clearBuffer(): void {
    this.ring.fill(undefined);
    this.ringHead = 0;
    this.ringSize = 0;
    this.held = [];
    this.heldStart = 0;
  }

  /**
   * Parks the worker until a write, `close()` or `delayMs` (if given) wakes it. Wakes of any kind
   * clear the timer, so none outlives the wait.
   */
  private wait(kind: WaitKind, delayMs: number | undefined): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(this.waitTimer);
        this.waitTimer = undefined;
        this.wakeWorker = undefined;
        this.waitKind = undefined;
        resolve();
      };
      this.waitKind = kind;
      this.wakeWorker = wake;
      if (delayMs !== undefined) {
        this.waitTimer = setTimeout(wake, delayMs);
        this.waitTimer.unref();
      }
    });
  }

  private backoffMs(failuresInARow: number): number {
    const { retryBaseMs, retryMaxMs } = this.settings;
    return Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failuresInARow - 1, 31));
  }

  private logFailure(error: unknown, records: number, attemptNumber: number): void {
    const message = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown } | null)?.code;
    try {
      this.settings.logger.error('usage sink write failed', {
        records,
        attempt: attemptNumber === 0 ? 'final' : attemptNumber,
        retryInMs: attemptNumber === 0 || this.closed ? null : this.backoffMs(attemptNumber),
        error: redactSecrets(message).replace(URL_CREDENTIALS, '//[redacted]@'),
        ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
      });
    } catch {
      // A broken logger must not stop the worker.
    }
  }
}

function resolveSettings(options: UsageSinkOptions, owner: string): UsageSinkSettings {
  const read = new OptionReader(owner);
  read.options(options);
  const settings: UsageSinkSettings = {
    batchSize: read.positiveInteger('batchSize', options.batchSize, 100),
    maxBuffered: read.positiveInteger('maxBuffered', options.maxBuffered, 10_000),
    flushIntervalMs: read.durationMs('flushIntervalMs', options.flushIntervalMs, 1_000),
    retryBaseMs: read.durationMs('retryBaseMs', options.retryBaseMs, 100),
    retryMaxMs: read.durationMs('retryMaxMs', options.retryMaxMs, 30_000),
    closeTimeoutMs: read.durationMs('closeTimeoutMs', options.closeTimeoutMs, 5_000),
    logger: read.implementing(
      'logger',
      options.logger ?? stderrLogger,
      ['error'],
      'an object with an error() method',
    ),
  };
  if (settings.batchSize > settings.maxBuffered) {
    read.fail('batchSize', `at most maxBuffered (${settings.maxBuffered})`, settings.batchSize);
  }
  if (settings.retryMaxMs < settings.retryBaseMs) {
    read.fail('retryMaxMs', `at least retryBaseMs (${settings.retryBaseMs})`, settings.retryMaxMs);
  }
  return settings;
}
