// A fixed-capacity ring of the most recent items: preallocated once, overwritten in rotation,
// never longer than its capacity whatever goes through it.

/**
 * The last `capacity` items pushed, in an array of `capacity` slots created up front. Pushing
 * past capacity overwrites the oldest item; nothing is ever allocated per push.
 *
 * @example
 * const ring = new RingBuffer<number>(3);
 * for (let i = 1; i <= 5; i++) ring.push(i);
 * ring.newest(10); // [5, 4, 3]
 */
export class RingBuffer<T> {
  /** The most items held. */
  readonly capacity: number;
  private readonly slots: (T | undefined)[];
  /** Where the next push goes. */
  private next = 0;
  private count = 0;

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new TypeError(`RingBuffer: capacity must be a positive integer, got ${String(capacity)}`);
    }
    this.capacity = capacity;
    this.slots = new Array<T | undefined>(capacity).fill(undefined);
  }

  /** Items held: at most {@link capacity}. */
  get size(): number {
    return this.count;
  }

  /** Adds `item`, overwriting the oldest one when full. */
  push(item: T): void {
    this.slots[this.next] = item;
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
    if (this.count < this.capacity) this.count++;
  }

  /** Up to `n` items, newest first, each passed through `map`. */
  newest<R>(n: number, map: (item: T) => R): R[] {
    const take = Math.min(n, this.count);
    const out: R[] = [];
    let index = this.next;
    for (let i = 0; i < take; i++) {
      index = index === 0 ? this.capacity - 1 : index - 1;
      out.push(map(this.slots[index]!));
    }
    return out;
  }
}
