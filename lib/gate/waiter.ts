// One queued `acquire` of a semaphore (local or Redis): a list node that is its own abort
// listener and holds its one queue-timeout timer, both stopped on every way out of the queue.
import type { WaiterListNode } from './waiter-list.js';

/** How a semaphore lets its waiters drop themselves; kept off the public API. */
export const DROP_WAITER = Symbol('dropWaiter');

/** A semaphore whose waiters can leave the queue on abort or timeout. */
export interface WaiterOwner<W> {
  [DROP_WAITER](waiter: W, code: 'aborted' | 'queue_timeout'): void;
}

/**
 * A queued `acquire`. `Self` is the concrete waiter type (for the list links), `P` the permit it
 * resolves with, `E` what it rejects with. No closure per waiter: the node is the listener.
 */
export class QueuedWaiter<Self extends QueuedWaiter<Self, P, E>, P, E> implements WaiterListNode<Self> {
  prev: Self | undefined = undefined;
  next: Self | undefined = undefined;
  linked = false;
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly owner: WaiterOwner<Self>,
    readonly resolve: (permit: P) => void,
    readonly reject: (reason: E) => void,
    readonly signal: AbortSignal | undefined,
    readonly enqueuedAtMs: number,
  ) {}

  /** The signal's 'abort' event. */
  handleEvent(): void {
    this.owner[DROP_WAITER](this as unknown as Self, 'aborted');
  }

  /** The queue timeout fired. */
  handleTimeout(): void {
    this.owner[DROP_WAITER](this as unknown as Self, 'queue_timeout');
  }

  /** Arms the queue timeout (one unref'd timer); `Infinity` arms none. */
  expireAfter(timeoutMs: number): void {
    if (timeoutMs === Infinity) return;
    this.timer = setTimeout(expireWaiter, timeoutMs, this);
    this.timer.unref();
  }

  /** Stops the timer and the abort listener; called on every way out of the queue. */
  detach(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.signal?.removeEventListener('abort', this);
  }
}

function expireWaiter(waiter: { timer: NodeJS.Timeout | undefined; handleTimeout(): void }): void {
  waiter.timer = undefined;
  waiter.handleTimeout();
}
