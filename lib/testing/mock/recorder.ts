// What the mock received: a bounded ring of recent requests, the `request`/`settled` events, and the
// waiters of waitForSettled, which resolve on a settled count rather than on sleeps.
import { EventEmitter } from 'node:events';
import type { MockUpstreamEvent, RecordedRequest } from './types.js';
import { integerIn } from './validate.js';

/** A {@link RecordedRequest} whose changing fields the exchange updates in place. */
export type MutableRecord = { -readonly [K in keyof RecordedRequest]: RecordedRequest[K] };

interface SettledWaiter {
  readonly count: number;
  readonly resolve: (records: RecordedRequest[]) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_WAIT_TIMEOUT_MS = 5000;

/** The request log of one mock: records, events and settled-count waiters. */
export class RequestRecorder {
  /** Bumped by `reset()`, so exchanges that began before it do not count towards new waits. */
  generation = 0;
  private readonly emitter = new EventEmitter();
  private readonly ring: MutableRecord[] = [];
  private ringStart = 0;
  private seq = 0;
  private settledCount = 0;
  private readonly waiters = new Set<SettledWaiter>();
  private closed = false;

  constructor(private readonly capacity: number) {}

  /** Oldest first, a new array on every call. */
  get requests(): RecordedRequest[] {
    return this.ring.slice(this.ringStart).concat(this.ring.slice(0, this.ringStart));
  }

  /** Starts the record of an arriving request and keeps it in the ring. */
  open(method: string, path: string, headers: RecordedRequest['headers']): MutableRecord {
    const record: MutableRecord = {
      seq: ++this.seq,
      method,
      path,
      headers,
      rawBody: '',
      body: undefined,
      receivedAt: Date.now(),
      aborted: false,
      completed: false,
      settled: false,
    };
    this.remember(record);
    return record;
  }

  emit(event: MockUpstreamEvent, record: RecordedRequest): void {
    this.emitter.emit(event, record);
  }

  on(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): void {
    this.emitter.on(event, listener);
  }

  off(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): void {
    this.emitter.off(event, listener);
  }

  /** Counts a settled exchange (if it began in the current generation) and emits `settled`. */
  settled(record: RecordedRequest, generation: number): void {
    if (generation === this.generation) {
      this.settledCount++;
      if (this.waiters.size > 0) this.wakeWaiters();
    }
    this.emitter.emit('settled', record);
  }

  waitForSettled(count: number, timeoutMs: number = DEFAULT_WAIT_TIMEOUT_MS): Promise<RecordedRequest[]> {
    try {
      integerIn('waitForSettled', 'count', count, 0, 0, Number.MAX_SAFE_INTEGER);
      integerIn('waitForSettled', 'timeoutMs', timeoutMs, 0, 1, 2 ** 31 - 1);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (this.settledCount >= count) return Promise.resolve(this.settledRecords());
    if (this.closed) return Promise.reject(this.closedError(count));
    return new Promise((resolve, reject) => {
      const waiter: SettledWaiter = { count, resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `waitForSettled: ${this.settledCount} of ${count} requests settled within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Forgets the records, the `seq` counter and the settled count. */
  reset(): void {
    this.ring.length = 0;
    this.ringStart = 0;
    this.seq = 0;
    this.settledCount = 0;
    this.generation++;
  }

  /** Called when the mock starts closing: from now on a wait that is not met already fails at once. */
  refuseNewWaits(): void {
    this.closed = true;
  }

  /** Called once the mock has closed: rejects the pending waits and clears their timers. */
  rejectWaiters(): void {
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(this.closedError(waiter.count));
    }
    this.waiters.clear();
  }

  private remember(record: MutableRecord): void {
    const capacity = this.capacity;
    if (capacity === 0) return;
    if (this.ring.length < capacity) {
      this.ring.push(record);
      return;
    }
    this.ring[this.ringStart] = record;
    this.ringStart = this.ringStart + 1 === capacity ? 0 : this.ringStart + 1;
  }

  private settledRecords(): RecordedRequest[] {
    return this.requests.filter((record) => record.settled);
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters) {
      if (this.settledCount < waiter.count) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve(this.settledRecords());
    }
  }

  private closedError(count: number): Error {
    return new Error(
      `waitForSettled: the mock upstream closed with ${this.settledCount} of ${count} requests settled`,
    );
  }
}
