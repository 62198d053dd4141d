// Durable settlement: a request's real cost reaches the store even when the store cannot answer
// at that moment. A failed settlement waits in a bounded queue that one worker drains with
// backoff, until it lands; nothing is dropped while the process lives and the queue has room.
import { isKeyStoreError } from '../keys/errors.js';
import type { KeyAccounting, Settlement } from '../keys/types.js';
import type { Logger } from '../log.js';
import { OptionReader } from '../options.js';
import { sleep } from '../retry/sleep.js';

/** Options of the settlement queue (`keyAuth({ settlement })`). */
export interface SettlementQueueOptions {
  /**
   * Settlements waiting for the store at most; past it the oldest is given up (and logged and
   * counted as dropped): on Redis its reservation is then charged when it expires; a memory
   * store keeps the hold until restart. Default 10 000.
   */
  maxPending?: number;
  /** First wait before retrying a failed settlement, in ms; doubled each time. Default 100. */
  retryBaseMs?: number;
  /** Longest wait between retries, in ms. Default 30 000. */
  retryMaxMs?: number;
}

/** What the queue reports, for health pages and tests. */
export interface SettlementStats {
  /** Settlements waiting for the store now. */
  pending: number;
  /** Settlements that landed after waiting. */
  recovered: number;
  /** Settlements given up because the queue was full. */
  dropped: number;
  /** Settlements the store refused as invalid (it charged their reservation). */
  refused: number;
}

interface Pending {
  reservationId: string;
  settlement: Settlement;
  requestId: string;
}

/**
 * Settles reservations in a store. `settle` tries at once; a failure (an unreachable store, say)
 * queues the settlement for the one worker, which retries the oldest first with exponential
 * backoff until it lands. A settlement the store refuses as invalid is not retried (the store
 * charged its reservation). `close()` gives the worker a last, bounded chance.
 */
export class SettlementQueue {
  private readonly queue: Pending[] = [];
  private readonly maxPending: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private worker: Promise<void> | undefined;
  private readonly stop = new AbortController();
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly counts = { recovered: 0, dropped: 0, refused: 0 };

  constructor(
    private readonly store: KeyAccounting,
    private readonly logger: Logger,
    options: SettlementQueueOptions = {},
  ) {
    const read = new OptionReader('keyAuth: settlement');
    read.options(options);
    this.maxPending = read.positiveInteger('maxPending', options.maxPending, 10_000);
    this.retryBaseMs = read.durationMs('retryBaseMs', options.retryBaseMs, 100);
    this.retryMaxMs = read.durationMs('retryMaxMs', options.retryMaxMs, 30_000);
    if (this.retryMaxMs < this.retryBaseMs)
      read.fail('retryMaxMs', `at least retryBaseMs (${this.retryBaseMs})`, this.retryMaxMs);
  }

  /** Settles now, or queues the settlement for the worker when the store cannot take it. */
  settle(reservationId: string, settlement: Settlement, requestId: string): void {
    this.inFlight++;
    this.store.settle(reservationId, settlement).then(
      () => this.done(),
      (err: unknown) => {
        if (!this.refused(err, requestId)) this.enqueue({ reservationId, settlement, requestId }, err);
        this.done();
      },
    );
  }

  /** The queue's counts. */
  stats(): SettlementStats {
    return { pending: this.queue.length, ...this.counts };
  }

  /** Resolves once nothing is being settled or waiting (for tests, and before a last read). */
  whenIdle(): Promise<void> {
    // After close, what is left in the queue will not move (as in notifyIdle).
    if (this.inFlight === 0 && (this.queue.length === 0 || this.stop.signal.aborted))
      return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops the worker after one last pass over the queue, within `timeoutMs`. Idempotent. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (!this.stop.signal.aborted) {
      const timeUp = new AbortController();
      const deadline = sleep(timeoutMs, timeUp.signal).catch(() => undefined);
      await Promise.race([this.whenIdle(), deadline]);
      this.stop.abort();
      // A store call that never returns must not hold close() past its time either.
      await Promise.race([this.worker, deadline]);
      timeUp.abort();
    }
    if (this.queue.length > 0) {
      this.logger.error('settlements left unsettled at close', { pending: this.queue.length });
    }
  }

  /** True when the store refused the settlement itself: never retried. */
  private refused(err: unknown, requestId: string): boolean {
    if (!isKeyStoreError(err)) return false;
    this.counts.refused++;
    this.logger.error('settlement refused by the store; its reservation was charged', {
      requestId,
      error: err.message,
    });
    return true;
  }

  private enqueue(pending: Pending, err: unknown): void {
    if (this.stop.signal.aborted) {
      this.logger.error('settlement failed after close', {
        requestId: pending.requestId,
        error: String(err),
      });
      return;
    }
    if (this.queue.length >= this.maxPending) {
      const oldest = this.queue.shift()!;
      this.counts.dropped++;
      this.logger.error(
        'settlement queue full: the oldest is given up; its reservation stays held (charged at expiry on Redis)',
        {
          requestId: oldest.requestId,
          reservationId: oldest.reservationId,
        },
      );
    }
    if (this.queue.length === 0) {
      this.logger.error('settlement failed; queued for retry', {
        requestId: pending.requestId,
        error: String(err),
      });
    }
    this.queue.push(pending);
    this.worker ??= this.drain();
  }

  /** The one worker: retries the oldest settlement until it lands, backing off while it fails. */
  private async drain(): Promise<void> {
    let failures = 0;
    while (this.queue.length > 0) {
      const pending = this.queue[0]!;
      try {
        await this.store.settle(pending.reservationId, pending.settlement);
        this.counts.recovered++;
        failures = 0;
        this.forget(pending);
      } catch (err) {
        if (this.refused(err, pending.requestId)) {
          this.forget(pending);
          continue;
        }
        if (this.stop.signal.aborted) break;
        const capMs = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(failures++, 30));
        try {
          await sleep(capMs, this.stop.signal);
        } catch {
          break;
        }
      }
    }
    if (this.queue.length === 0 && failures === 0 && this.counts.recovered > 0) {
      this.logger.error('settlements recovered', { recovered: this.counts.recovered });
    }
    this.worker = undefined;
    this.notifyIdle();
  }

  /** Takes `pending` off the queue, unless a full queue gave it up while it was being tried. */
  private forget(pending: Pending): void {
    if (this.queue[0] === pending) this.queue.shift();
  }

  private done(): void {
    this.inFlight--;
    this.notifyIdle();
  }

  private notifyIdle(): void {
    // After close, what is left in the queue will not move: waiting for it must not hang.
    if (this.inFlight > 0 || (this.queue.length > 0 && !this.stop.signal.aborted)) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
