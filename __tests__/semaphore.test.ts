// FifoSemaphore: FIFO order, direct hand-off (no overtaking), O(1) leave on abort, queue bounds and
// timeouts under fake timers, and a property test that random interleavings never leak a permit.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import fc from 'fast-check';
import { FifoSemaphore, GateRejection, isGateRejection, type Permit } from '../lib/gate/semaphore.js';
import { WaiterList, type WaiterListNode } from '../lib/gate/waiter-list.js';
import { fuzzRuns } from './support/fuzz.js';

/** Lets pending promise callbacks run (grants and rejections settle in microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** The rejection of `promise`, which must reject. */
async function rejectionOf(promise: Promise<unknown>): Promise<GateRejection> {
  try {
    await promise;
  } catch (err) {
    if (isGateRejection(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** A clock the test moves by hand. */
function manualClock(start = 0) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

beforeEach(() => {
  jest.useFakeTimers();
});

afterEach(() => {
  expect(jest.getTimerCount()).toBe(0);
  jest.useRealTimers();
});

describe('FifoSemaphore', () => {
  it('hands out max permits at once, then refuses tryAcquire', () => {
    const semaphore = new FifoSemaphore({ max: 2 });
    const first = semaphore.tryAcquire();
    const second = semaphore.tryAcquire();
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(semaphore.tryAcquire()).toBeUndefined();
    expect(semaphore.inFlight).toBe(2);
    first!.release();
    second!.release();
    expect(semaphore.inFlight).toBe(0);
    expect(semaphore.idle).toBe(true);
  });

  it('resolves acquire at once with waitedMs 0 when a permit is free', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const permit = await semaphore.acquire();
    expect(permit.waitedMs).toBe(0);
    expect(semaphore.inFlight).toBe(1);
    permit.release();
  });

  it('grants 10,000 waiters in the order they came', async () => {
    const semaphore = new FifoSemaphore({ max: 1, maxQueue: 10_000 });
    const holder = semaphore.tryAcquire()!;
    const granted: number[] = [];
    const done: Promise<void>[] = [];
    for (let i = 0; i < 10_000; i++) {
      done.push(
        semaphore.acquire().then((permit) => {
          granted.push(i);
          permit.release();
        }),
      );
    }
    expect(semaphore.queued).toBe(10_000);
    holder.release();
    await Promise.all(done);
    expect(granted).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    expect(semaphore.idle).toBe(true);
  });

  it('hands a released permit to the head waiter, not to a newcomer in the same tick', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const a = semaphore.tryAcquire()!;
    const b = semaphore.acquire();
    a.release();
    // C arrives in the same tick, before B's promise callbacks ran.
    expect(semaphore.tryAcquire()).toBeUndefined();
    const c = semaphore.acquire();
    expect(semaphore.inFlight).toBe(1);
    expect(semaphore.queued).toBe(1);
    const order: string[] = [];
    const bPermit = await b.then((permit) => (order.push('B'), permit));
    void c.then(() => order.push('C'));
    await settle();
    expect(order).toEqual(['B']);
    bPermit.release();
    const cPermit = await c;
    expect(order).toEqual(['B', 'C']);
    cPermit.release();
    expect(semaphore.idle).toBe(true);
  });

  it('gives the permit to a waiter aborted in the same tick it was handed over, and the count stays exact', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const a = semaphore.tryAcquire()!;
    const bLeft = new AbortController();
    const b = semaphore.acquire(bLeft.signal);
    const c = semaphore.acquire();
    a.release(); // hand-off to B
    bLeft.abort(); // B's client leaves in the same tick: too late, B owns the permit
    expect(semaphore.inFlight).toBe(1);
    expect(semaphore.queued).toBe(1);
    const bPermit = await b;
    expect(bPermit.released).toBe(false);
    // B releases what it no longer needs; the permit moves on to C.
    bPermit.release();
    bPermit.release();
    const cPermit = await c;
    expect(semaphore.inFlight).toBe(1);
    expect(semaphore.queued).toBe(0);
    cPermit.release();
    expect(semaphore.inFlight).toBe(0);
    expect(semaphore.idle).toBe(true);
  });

  it('treats a second release as a no-op', () => {
    const semaphore = new FifoSemaphore({ max: 2 });
    const a = semaphore.tryAcquire()!;
    const b = semaphore.tryAcquire()!;
    a.release();
    a.release();
    expect(semaphore.inFlight).toBe(1);
    expect(a.released).toBe(true);
    expect(b.released).toBe(false);
    b.release();
    expect(semaphore.inFlight).toBe(0);
  });

  it('rejects with queue_full when maxQueue requests already wait', async () => {
    const semaphore = new FifoSemaphore({ max: 1, maxQueue: 2 });
    const holder = semaphore.tryAcquire()!;
    const waiting = [semaphore.acquire(), semaphore.acquire()];
    const refusal = await rejectionOf(semaphore.acquire());
    expect(refusal).toBeInstanceOf(GateRejection);
    expect(refusal.code).toBe('queue_full');
    expect(refusal.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(semaphore.queued).toBe(2);
    holder.release();
    (await waiting[0]!).release();
    (await waiting[1]!).release();
    expect(semaphore.idle).toBe(true);
  });

  it('refuses at once with maxQueue 0', async () => {
    const semaphore = new FifoSemaphore({ max: 1, maxQueue: 0 });
    const holder = semaphore.tryAcquire()!;
    expect((await rejectionOf(semaphore.acquire())).code).toBe('queue_full');
    holder.release();
  });

  it('defaults maxQueue to twice max', () => {
    expect(new FifoSemaphore({ max: 3 }).maxQueue).toBe(6);
  });

  it('times a waiter out after queueTimeoutMs and clears its timer', async () => {
    const semaphore = new FifoSemaphore({ max: 1, queueTimeoutMs: 5_000 });
    const holder = semaphore.tryAcquire()!;
    const waiting = semaphore.acquire();
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(4_999);
    expect(semaphore.queued).toBe(1);
    jest.advanceTimersByTime(1);
    expect(semaphore.queued).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
    const refusal = await rejectionOf(waiting);
    expect(refusal.code).toBe('queue_timeout');
    expect(refusal.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(semaphore.inFlight).toBe(1);
    holder.release();
    expect(semaphore.idle).toBe(true);
  });

  it('clears the queue timer when the permit is granted', async () => {
    const semaphore = new FifoSemaphore({ max: 1, queueTimeoutMs: 5_000 });
    const holder = semaphore.tryAcquire()!;
    const waiting = semaphore.acquire();
    expect(jest.getTimerCount()).toBe(1);
    holder.release();
    expect(jest.getTimerCount()).toBe(0);
    const permit = await waiting;
    jest.advanceTimersByTime(10_000);
    expect(permit.released).toBe(false);
    permit.release();
  });

  it('starts no timer with queueTimeoutMs Infinity', () => {
    const semaphore = new FifoSemaphore({ max: 1, queueTimeoutMs: Infinity });
    const holder = semaphore.tryAcquire()!;
    const waiting = semaphore.acquire();
    expect(jest.getTimerCount()).toBe(0);
    holder.release();
    return waiting.then((permit) => permit.release());
  });

  it('measures the wait with the injected clock', async () => {
    const clock = manualClock(1_000);
    const semaphore = new FifoSemaphore({ max: 1, clock: clock.now });
    const holder = semaphore.tryAcquire()!;
    const waiting = semaphore.acquire();
    clock.advance(250);
    holder.release();
    const permit = await waiting;
    expect(permit.waitedMs).toBe(250);
    permit.release();
  });

  it('estimates Retry-After from recent hold times', async () => {
    const clock = manualClock();
    const semaphore = new FifoSemaphore({ max: 1, maxQueue: 1, clock: clock.now });
    const first = semaphore.tryAcquire()!;
    clock.advance(4_000);
    first.release();
    const holder = semaphore.tryAcquire()!;
    const waiting = semaphore.acquire();
    const refusal = await rejectionOf(semaphore.acquire());
    // one waiter ahead with max 1: two rounds of ~4 s
    expect(refusal.retryAfterMs).toBe(8_000);
    holder.release();
    (await waiting).release();
  });

  it('rejects with aborted and leaves the queue when the signal aborts', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const holder = semaphore.tryAcquire()!;
    const left = new AbortController();
    const waiting = semaphore.acquire(left.signal);
    expect(semaphore.queued).toBe(1);
    left.abort();
    expect(semaphore.queued).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
    expect((await rejectionOf(waiting)).code).toBe('aborted');
    holder.release();
    expect(semaphore.idle).toBe(true);
  });

  it('rejects at once for a signal that already aborted, even with a free permit', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const refusal = await rejectionOf(semaphore.acquire(AbortSignal.abort()));
    expect(refusal.code).toBe('aborted');
    expect(semaphore.inFlight).toBe(0);
  });

  it('removes the abort listener on grant and on timeout', async () => {
    const semaphore = new FifoSemaphore({ max: 1, queueTimeoutMs: 1_000 });
    const holder = semaphore.tryAcquire()!;
    const granted = new AbortController();
    const timedOut = new AbortController();
    const spyGranted = jest.spyOn(granted.signal, 'removeEventListener');
    const spyTimedOut = jest.spyOn(timedOut.signal, 'removeEventListener');
    const first = semaphore.acquire(granted.signal);
    const second = semaphore.acquire(timedOut.signal);
    holder.release();
    const permit = await first;
    expect(spyGranted).toHaveBeenCalledWith('abort', expect.anything());
    jest.advanceTimersByTime(1_000);
    expect((await rejectionOf(second)).code).toBe('queue_timeout');
    expect(spyTimedOut).toHaveBeenCalledWith('abort', expect.anything());
    permit.release();
  });

  it('removes an aborted waiter from the middle of 100,000 and keeps the order of the rest', async () => {
    const total = 100_000;
    const middle = total / 2;
    const semaphore = new FifoSemaphore({ max: 1, maxQueue: total, queueTimeoutMs: Infinity });
    const holder = semaphore.tryAcquire()!;
    const left = new AbortController();
    const granted: number[] = [];
    const settled: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      settled.push(
        semaphore.acquire(i === middle ? left.signal : undefined).then(
          (permit) => {
            granted.push(i);
            permit.release();
          },
          (err: unknown) => err,
        ),
      );
    }
    left.abort();
    expect(semaphore.queued).toBe(total - 1);
    expect(isGateRejection(await settled[middle])).toBe(true);
    holder.release();
    await Promise.all(settled);
    expect(granted).toHaveLength(total - 1);
    expect(granted.includes(middle)).toBe(false);
    expect(granted.every((value, index) => index === 0 || value > granted[index - 1]!)).toBe(true);
    expect(semaphore.idle).toBe(true);
  });

  it('close() rejects every waiter with closed, refuses newcomers, and is idempotent', async () => {
    const semaphore = new FifoSemaphore({ max: 1 });
    const holder = semaphore.tryAcquire()!;
    const waiting = [semaphore.acquire(), semaphore.acquire()];
    semaphore.close();
    semaphore.close();
    expect(semaphore.queued).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
    for (const promise of waiting) expect((await rejectionOf(promise)).code).toBe('closed');
    expect((await rejectionOf(semaphore.acquire())).code).toBe('closed');
    expect(semaphore.tryAcquire()).toBeUndefined();
    holder.release();
    expect(semaphore.inFlight).toBe(0);
  });

  it('calls onIdle when the last permit comes back with nobody waiting', () => {
    const onIdle = jest.fn();
    const semaphore = new FifoSemaphore({ max: 2, onIdle });
    const a = semaphore.tryAcquire()!;
    const b = semaphore.tryAcquire()!;
    a.release();
    expect(onIdle).not.toHaveBeenCalled();
    b.release();
    b.release();
    expect(onIdle).toHaveBeenCalledTimes(1);
  });

  it.each([
    [{ max: 0 }, 'FifoSemaphore: max must be a positive integer, got 0'],
    [{ max: 1.5 }, 'FifoSemaphore: max must be a positive integer, got 1.5'],
    [{ max: 1, maxQueue: -1 }, 'FifoSemaphore: maxQueue must be a non-negative integer, got -1'],
    [{ max: 1, maxQueue: Infinity }, 'FifoSemaphore: maxQueue must be a non-negative integer, got Infinity'],
    [{ max: 1, queueTimeoutMs: 0 }, 'FifoSemaphore: queueTimeoutMs must be a positive integer'],
    [{ max: 1, queueTimeoutMs: 2 ** 31 }, 'FifoSemaphore: queueTimeoutMs must be at most 2147483647'],
    [{ max: 1, clock: 5 }, 'FifoSemaphore: clock must be a function, got 5'],
  ])('refuses the options %p', (options, message) => {
    expect(() => new FifoSemaphore(options as never)).toThrow(TypeError);
    expect(() => new FifoSemaphore(options as never)).toThrow(message);
  });
});

describe('FifoSemaphore under random interleavings', () => {
  type Op =
    | { kind: 'acquire'; withSignal: boolean }
    | { kind: 'tryAcquire' }
    | { kind: 'release'; pick: number }
    | { kind: 'abort'; pick: number }
    | { kind: 'releaseThenAbortHead'; pick: number }
    | { kind: 'advance'; ms: number }
    | { kind: 'settle' };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('acquire' as const), withSignal: fc.boolean() }),
    fc.record({ kind: fc.constant('tryAcquire' as const) }),
    fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('releaseThenAbortHead' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 600 }) }),
    fc.record({ kind: fc.constant('settle' as const) }),
  );

  it('never leaks, duplicates or over-grants a permit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(op, { maxLength: 120 }),
        async (max, maxQueue, ops) => {
          const semaphore = new FifoSemaphore({ max, maxQueue, queueTimeoutMs: 1_000, clock: Date.now });
          // Every permit ever granted (released ones too, to try double releases) and the
          // permits the model believes are held.
          const everGranted: Permit[] = [];
          const held = new Set<Permit>();
          // Signals of every acquire (granted or not, to try aborts after the grant).
          const controllers: AbortController[] = [];
          // Acquires that neither resolved nor rejected yet, oldest first.
          const pending: { controller: AbortController | undefined }[] = [];
          // Failures inside promise callbacks, reported at the next exact check.
          const problems: string[] = [];
          const grant = (permit: Permit) => {
            if (held.has(permit) || permit.released) problems.push('a permit was granted twice');
            everGranted.push(permit);
            held.add(permit);
          };
          const acquire = (withSignal: boolean) => {
            const controller = withSignal ? new AbortController() : undefined;
            if (controller) controllers.push(controller);
            const entry = { controller };
            pending.push(entry);
            const done = () => pending.splice(pending.indexOf(entry), 1);
            semaphore.acquire(controller?.signal).then(
              (permit) => {
                done();
                grant(permit);
              },
              (err: unknown) => {
                done();
                if (!isGateRejection(err)) problems.push(`unexpected rejection: ${String(err)}`);
              },
            );
          };
          const releaseSome = (pick: number) => {
            if (everGranted.length === 0) return;
            const permit = everGranted[pick % everGranted.length]!;
            permit.release();
            held.delete(permit);
          };
          const checkCounters = () => {
            expect(semaphore.inFlight).toBeLessThanOrEqual(max);
            expect(semaphore.inFlight).toBeGreaterThanOrEqual(0);
            expect(semaphore.queued).toBeLessThanOrEqual(maxQueue);
            // Work-conserving: nobody waits while a permit is free.
            if (semaphore.queued > 0) expect(semaphore.inFlight).toBe(max);
          };
          const checkExact = async () => {
            await settle();
            expect(problems).toEqual([]);
            checkCounters();
            expect(semaphore.inFlight).toBe(held.size);
            expect(semaphore.queued).toBe(pending.length);
          };

          for (const step of ops) {
            switch (step.kind) {
              case 'acquire':
                acquire(step.withSignal);
                break;
              case 'tryAcquire': {
                const permit = semaphore.tryAcquire();
                if (permit !== undefined) grant(permit);
                break;
              }
              case 'release':
                releaseSome(step.pick);
                break;
              case 'abort':
                if (controllers.length > 0) controllers[step.pick % controllers.length]!.abort();
                break;
              case 'releaseThenAbortHead': {
                // The hand-off race: a release, then the head waiter's client leaves in the same tick.
                const head = pending[0];
                releaseSome(step.pick);
                head?.controller?.abort();
                break;
              }
              case 'advance':
                jest.advanceTimersByTime(step.ms);
                break;
              case 'settle':
                await checkExact();
                break;
            }
            checkCounters();
          }
          await checkExact();
          // Release everything, including what the remaining waiters are handed meanwhile.
          while (held.size > 0) {
            for (const permit of [...held]) {
              permit.release();
              held.delete(permit);
            }
            await checkExact();
          }
          expect(pending).toEqual([]);
          await settle();
          expect(semaphore.inFlight).toBe(0);
          expect(semaphore.queued).toBe(0);
          expect(semaphore.idle).toBe(true);
          expect(jest.getTimerCount()).toBe(0);
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });
});

describe('WaiterList', () => {
  interface Node extends WaiterListNode<Node> {
    id: number;
  }
  const node = (id: number): Node => ({ id, prev: undefined, next: undefined, linked: false });
  const ids = (list: WaiterList<Node>) => {
    const out: number[] = [];
    for (let n = list.shift(); n !== undefined; n = list.shift()) out.push(n.id);
    return out;
  };

  it('removes the head, the tail and a middle node, each once', () => {
    const list = new WaiterList<Node>();
    const nodes = [1, 2, 3, 4, 5].map(node);
    for (const n of nodes) list.push(n);
    expect(list.remove(nodes[0]!)).toBe(true);
    expect(list.remove(nodes[4]!)).toBe(true);
    expect(list.remove(nodes[2]!)).toBe(true);
    expect(list.remove(nodes[2]!)).toBe(false);
    expect(list.length).toBe(2);
    expect(list.peek()?.id).toBe(2);
    expect(ids(list)).toEqual([2, 4]);
    expect(list.length).toBe(0);
  });

  it('refuses a node that is already in a list', () => {
    const list = new WaiterList<Node>();
    const n = node(1);
    list.push(n);
    expect(() => list.push(n)).toThrow('already in a list');
  });
});
