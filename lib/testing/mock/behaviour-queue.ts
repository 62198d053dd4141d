// Which behaviour answers a POST request: the next queued one-shot behaviour, else the default one
// (a fixed behaviour or a factory asked per request), else the plain answer.
import { PLAIN, resolveBehaviour, type ResolvedBehaviour } from './behaviour.js';
import type { MockBehaviour, MockBehaviourFactory, RecordedRequest } from './types.js';

/** The one-shot queue and the default behaviour of one mock. */
export class BehaviourQueue {
  private readonly queue: ResolvedBehaviour[] = [];
  private fallback: ResolvedBehaviour | MockBehaviourFactory | undefined = undefined;

  /** Validates every behaviour before queueing any, so a bad one leaves the queue as it was. */
  enqueue(behaviours: readonly MockBehaviour[]): void {
    const resolved = behaviours.map(resolveBehaviour);
    for (const behaviour of resolved) this.queue.push(behaviour);
  }

  setDefault(behaviour: MockBehaviour | MockBehaviourFactory | undefined): void {
    this.fallback =
      behaviour === undefined || typeof behaviour === 'function' ? behaviour : resolveBehaviour(behaviour);
  }

  get pending(): number {
    return this.queue.length;
  }

  /** The next queued behaviour, if any (taken by POST requests in arrival order). */
  take(): ResolvedBehaviour | undefined {
    return this.queue.shift();
  }

  /** The default behaviour for a request whose body was read; a factory that throws throws here. */
  defaultFor(record: RecordedRequest): ResolvedBehaviour {
    const behaviour = this.fallback;
    if (behaviour === undefined) return PLAIN;
    return typeof behaviour === 'function' ? resolveBehaviour(behaviour(record)) : behaviour;
  }

  clear(): void {
    this.queue.length = 0;
    this.fallback = undefined;
  }
}
