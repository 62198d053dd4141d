// The durable settlement queue, under fake timers, in front of a real MemoryKeyStore whose `settle`
// is intercepted: it fails while the test says the store is down (or hangs, or is slow), and
// otherwise reaches the real store, so every figure read afterwards is the store's own.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { hashApiKey, MemoryKeyStore, StoreUnavailableError, type Settlement } from '../lib/index.js';
import { SettlementQueue, type SettlementQueueOptions } from '../lib/accounting/settlement-queue.js';

const T0 = Date.parse('2026-11-22T10:00:00Z');
const MAX_PARALLEL = 8;

/** What the intercepted store does with one settle call. */
type Behaviour = 'down' | 'up' | 'hang' | 'held';

interface Call {
  reservationId: string;
  atMs: number;
  behaviour: Behaviour;
}

function settlement(costUsd: number): Settlement {
  return { model: 'm', costUsd, promptTokens: 10, completionTokens: 5, nowMs: T0 };
}

/** A real store with one key, its `settle` behaving as `behave` says, every call recorded. */
async function harness(options: SettlementQueueOptions = {}) {
  const store = new MemoryKeyStore({ clock: () => T0 });
  const key = await store.createKey({
    name: 'k',
    hash: hashApiKey('sk-llmux-queue-test-0001'),
    prefix: 'sk-llmux-queue',
    budgetUsd: 1_000,
    maxParallel: MAX_PARALLEL,
  });
  const realSettle = store.settle.bind(store);
  const calls: Call[] = [];
  /** Reservation ids in the order the real store received them. */
  const landed: string[] = [];
  const held: (() => void)[] = [];
  let behave: (reservationId: string) => Behaviour = () => 'up';
  store.settle = (reservationId: string, value: Settlement): Promise<void> => {
    const behaviour = behave(reservationId);
    calls.push({ reservationId, atMs: Date.now() - T0, behaviour });
    if (behaviour === 'down')
      return Promise.reject(new StoreUnavailableError('the key store is unavailable'));
    if (behaviour === 'hang') return new Promise<void>(() => {});
    const land = () => {
      landed.push(reservationId);
      return realSettle(reservationId, value);
    };
    if (behaviour === 'held')
      return new Promise<void>((resolve, reject) => held.push(() => land().then(resolve, reject)));
    return land();
  };
  const logs: { message: string; fields: Record<string, unknown> }[] = [];
  const queue = new SettlementQueue(
    store,
    { error: (message, fields) => logs.push({ message, fields }) },
    options,
  );

  /** Opens a reservation of `costUsd` on the key. */
  async function reserve(costUsd = 1): Promise<string> {
    const admission = await store.admit({
      keyId: key.id,
      model: 'm',
      estimatedCostUsd: costUsd,
      estimatedTokens: 15,
      nowMs: T0,
    });
    if (!admission.ok) throw new Error(`not admitted: ${admission.reason}`);
    return admission.reservationId;
  }

  /** How many reservations the key could still open now (each released again at once). */
  async function freeSlots(): Promise<number> {
    const opened: string[] = [];
    for (let i = 0; i < MAX_PARALLEL; i++) {
      const admission = await store.admit({
        keyId: key.id,
        model: undefined,
        estimatedCostUsd: 0,
        estimatedTokens: 0,
        nowMs: T0,
      });
      if (!admission.ok) break;
      opened.push(admission.reservationId);
    }
    for (const id of opened)
      await realSettle(id, { model: undefined, costUsd: 0, promptTokens: 0, completionTokens: 0, nowMs: T0 });
    return opened.length;
  }

  const spendUsd = async () => (await store.getKey(key.id))!.spendUsd;

  return {
    store,
    queue,
    calls,
    landed,
    held,
    logs,
    reserve,
    freeSlots,
    spendUsd,
    /** Sets what the store does with each later call. */
    behaves(fn: (reservationId: string) => Behaviour) {
      behave = fn;
    },
  };
}

/** Lets promise callbacks (the store's, the queue's) run without moving the clock. */
async function flush(): Promise<void> {
  await jest.advanceTimersByTimeAsync(0);
}

beforeEach(() => {
  jest.useFakeTimers({ now: T0, doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
});
afterEach(() => {
  jest.useRealTimers();
});

describe('SettlementQueue', () => {
  it('settles at once while the store answers, queueing nothing', async () => {
    const h = await harness();
    const id = await h.reserve();
    h.queue.settle(id, settlement(0.25), 'req-1');
    await h.queue.whenIdle();
    expect(h.calls).toHaveLength(1);
    expect(await h.spendUsd()).toBe(0.25);
    expect(h.queue.stats()).toEqual({ pending: 0, recovered: 0, dropped: 0, refused: 0 });
    expect(jest.getTimerCount()).toBe(0);
  });

  it('queues a settlement the store could not take and retries it with doubling waits until it lands', async () => {
    const h = await harness({ retryBaseMs: 100 });
    const id = await h.reserve();
    let failures = 4;
    h.behaves(() => (failures-- > 0 ? 'down' : 'up'));
    h.queue.settle(id, settlement(0.5), 'req-1');
    await flush();
    expect(h.queue.stats().pending).toBe(1);
    await jest.advanceTimersByTimeAsync(699);
    expect(h.landed).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    // The first try, the worker's at once, then after 100, 200 and 400 ms.
    expect(h.calls.map((call) => call.atMs)).toEqual([0, 0, 100, 300, 700]);
    expect(h.landed).toEqual([id]);
    expect(await h.spendUsd()).toBe(0.5);
    expect(h.queue.stats()).toEqual({ pending: 0, recovered: 1, dropped: 0, refused: 0 });
  });

  it('never waits longer than retryMaxMs between tries', async () => {
    const h = await harness({ retryBaseMs: 100, retryMaxMs: 250 });
    const id = await h.reserve();
    h.behaves(() => 'down');
    h.queue.settle(id, settlement(1), 'req-1');
    await jest.advanceTimersByTimeAsync(1_050);
    const waits = h.calls.slice(2).map((call, i) => call.atMs - h.calls[i + 1]!.atMs);
    expect(waits).toEqual([100, 200, 250, 250, 250]);
    h.behaves(() => 'up');
    await jest.advanceTimersByTimeAsync(250);
    expect(h.landed).toEqual([id]);
  });

  it('lands each settlement exactly once, the oldest first', async () => {
    const h = await harness({ retryBaseMs: 100 });
    const ids = [await h.reserve(1), await h.reserve(2), await h.reserve(4)];
    let up = false;
    h.behaves(() => (up ? 'up' : 'down'));
    ids.forEach((id, i) => h.queue.settle(id, settlement(i + 1), `req-${i}`));
    await jest.advanceTimersByTimeAsync(1_000);
    expect(h.queue.stats().pending).toBe(3);
    up = true;
    await jest.advanceTimersByTimeAsync(5_000);
    await h.queue.whenIdle();
    expect(h.landed).toEqual(ids);
    expect(await h.spendUsd()).toBe(1 + 2 + 3);
    expect(await h.freeSlots()).toBe(MAX_PARALLEL);
    expect(h.queue.stats()).toEqual({ pending: 0, recovered: 3, dropped: 0, refused: 0 });
  });

  it('logs the first failure of a run once, not every queued settlement', async () => {
    const h = await harness();
    h.behaves(() => 'down');
    for (let i = 0; i < 5; i++) h.queue.settle(await h.reserve(), settlement(1), `req-${i}`);
    await flush();
    expect(h.logs.filter((log) => log.message === 'settlement failed; queued for retry')).toHaveLength(1);
  });

  it('does not retry a settlement the store refused as invalid, which charged its reservation', async () => {
    const h = await harness();
    const id = await h.reserve(3);
    h.queue.settle(id, settlement(-1), 'req-bad');
    await h.queue.whenIdle();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(h.calls).toHaveLength(1);
    expect(h.queue.stats()).toEqual({ pending: 0, recovered: 0, dropped: 0, refused: 1 });
    expect(await h.spendUsd()).toBe(3);
    expect(h.logs.at(-1)).toMatchObject({ fields: { requestId: 'req-bad' } });
  });

  it('stops retrying a queued settlement once the store refuses it as invalid', async () => {
    const h = await harness({ retryBaseMs: 100 });
    const bad = await h.reserve(3);
    const good = await h.reserve(1);
    let up = false;
    h.behaves(() => (up ? 'up' : 'down'));
    h.queue.settle(bad, settlement(NaN), 'req-bad');
    h.queue.settle(good, settlement(0.5), 'req-good');
    await jest.advanceTimersByTimeAsync(150);
    up = true;
    await jest.advanceTimersByTimeAsync(1_000);
    await h.queue.whenIdle();
    expect(h.calls.filter((call) => call.reservationId === bad && call.behaviour === 'up')).toHaveLength(1);
    expect(h.landed).toEqual([bad, good]);
    expect(h.queue.stats()).toEqual({ pending: 0, recovered: 1, dropped: 0, refused: 1 });
    expect(await h.spendUsd()).toBe(3 + 0.5);
  });

  it('gives up the oldest settlement when maxPending are waiting, and counts it', async () => {
    const h = await harness({ maxPending: 2, retryBaseMs: 100 });
    const ids = [await h.reserve(), await h.reserve(), await h.reserve()];
    let up = false;
    h.behaves(() => (up ? 'up' : 'down'));
    h.queue.settle(ids[0]!, settlement(1), 'req-0');
    h.queue.settle(ids[1]!, settlement(2), 'req-1');
    await jest.advanceTimersByTimeAsync(50);
    h.queue.settle(ids[2]!, settlement(4), 'req-2');
    await flush();
    expect(h.queue.stats()).toMatchObject({ pending: 2, dropped: 1 });
    expect(h.logs.find((log) => log.message.startsWith('settlement queue full'))?.fields).toMatchObject({
      requestId: 'req-0',
      reservationId: ids[0],
    });
    up = true;
    await jest.advanceTimersByTimeAsync(1_000);
    await h.queue.whenIdle();
    expect(h.landed).toEqual([ids[1], ids[2]]);
    expect(await h.spendUsd()).toBe(2 + 4);
  });

  it('never loses a waiting settlement when the one given up for room was being tried', async () => {
    const h = await harness({ maxPending: 2, retryBaseMs: 100 });
    const [a, b, c] = [await h.reserve(), await h.reserve(), await h.reserve()];
    h.behaves(() => 'down');
    h.queue.settle(a!, settlement(1), 'req-a');
    h.queue.settle(b!, settlement(2), 'req-b');
    await flush();
    // The worker's next try of `a` reaches a slow store; meanwhile `c` fails and fills the queue.
    h.behaves((id) => (id === a ? 'held' : 'down'));
    await jest.advanceTimersByTimeAsync(100);
    expect(h.held).toHaveLength(1);
    h.queue.settle(c!, settlement(4), 'req-c');
    await flush();
    expect(h.queue.stats()).toMatchObject({ pending: 2, dropped: 1 });
    h.behaves(() => 'up');
    h.held[0]!();
    await jest.advanceTimersByTimeAsync(1_000);
    await h.queue.whenIdle();
    expect([...h.landed].sort()).toEqual([a, b, c].sort());
    expect(await h.spendUsd()).toBe(1 + 2 + 4);
    expect(await h.freeSlots()).toBe(MAX_PARALLEL);
  });

  it('resolves whenIdle() once every settlement landed, and at once when none waits', async () => {
    const h = await harness({ retryBaseMs: 100 });
    await expect(h.queue.whenIdle()).resolves.toBeUndefined();
    const id = await h.reserve();
    let up = false;
    h.behaves(() => (up ? 'up' : 'down'));
    h.queue.settle(id, settlement(1), 'req-1');
    let idle = false;
    void h.queue.whenIdle().then(() => (idle = true));
    await jest.advanceTimersByTimeAsync(1_000);
    expect(idle).toBe(false);
    up = true;
    await jest.advanceTimersByTimeAsync(2_000);
    expect(idle).toBe(true);
    expect(h.landed).toEqual([id]);
  });

  it('resolves whenIdle() while the first try of a settlement is in flight only after it lands', async () => {
    const h = await harness();
    const id = await h.reserve();
    h.behaves(() => 'held');
    h.queue.settle(id, settlement(1), 'req-1');
    let idle = false;
    void h.queue.whenIdle().then(() => (idle = true));
    await flush();
    expect(idle).toBe(false);
    h.held[0]!();
    await flush();
    expect(idle).toBe(true);
  });

  it('lets close() give a queued settlement its last chance, then stops', async () => {
    const h = await harness({ retryBaseMs: 100 });
    const id = await h.reserve();
    let up = false;
    h.behaves(() => (up ? 'up' : 'down'));
    h.queue.settle(id, settlement(1), 'req-1');
    await flush();
    const closed = h.queue.close(5_000);
    up = true;
    await jest.advanceTimersByTimeAsync(100);
    await closed;
    expect(h.landed).toEqual([id]);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('closes within its timeout while the store stays down, leaving no timer, and logs what is left', async () => {
    const h = await harness({ retryBaseMs: 100 });
    h.behaves(() => 'down');
    h.queue.settle(await h.reserve(), settlement(1), 'req-1');
    await flush();
    let closed = false;
    void h.queue.close(1_000).then(() => (closed = true));
    await jest.advanceTimersByTimeAsync(999);
    expect(closed).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    expect(closed).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
    expect(h.logs.at(-1)).toEqual({ message: 'settlements left unsettled at close', fields: { pending: 1 } });
    const calls = h.calls.length;
    await jest.advanceTimersByTimeAsync(60_000);
    expect(h.calls).toHaveLength(calls);
  });

  it('closes within its timeout while a retry hangs in the store', async () => {
    const h = await harness({ retryBaseMs: 100 });
    h.behaves(() => 'down');
    h.queue.settle(await h.reserve(), settlement(1), 'req-1');
    await flush();
    h.behaves(() => 'hang');
    await jest.advanceTimersByTimeAsync(100);
    let closed = false;
    void h.queue.close(1_000).then(() => (closed = true));
    await jest.advanceTimersByTimeAsync(1_000);
    expect(closed).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('resolves whenIdle() after close() even with settlements left', async () => {
    const h = await harness({ retryBaseMs: 100 });
    h.behaves(() => 'down');
    h.queue.settle(await h.reserve(), settlement(1), 'req-1');
    await flush();
    const closing = h.queue.close(500);
    await jest.advanceTimersByTimeAsync(500);
    await closing;
    let idle = false;
    void h.queue.whenIdle().then(() => (idle = true));
    await flush();
    expect(idle).toBe(true);
  });

  it('is idempotent: a second close() resolves and changes nothing', async () => {
    const h = await harness();
    const first = h.queue.close(1_000);
    const second = h.queue.close(1_000);
    await flush();
    await expect(Promise.all([first, second])).resolves.toEqual([undefined, undefined]);
    await expect(h.queue.close()).resolves.toBeUndefined();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('after close, still tries a settlement once and never queues it', async () => {
    const h = await harness();
    await h.queue.close(10);
    const ok = await h.reserve(2);
    h.queue.settle(ok, settlement(2), 'req-ok');
    await h.queue.whenIdle();
    expect(await h.spendUsd()).toBe(2);
    h.behaves(() => 'down');
    h.queue.settle(await h.reserve(), settlement(1), 'req-late');
    await flush();
    expect(h.queue.stats().pending).toBe(0);
    expect(h.logs.at(-1)).toMatchObject({
      message: 'settlement failed after close',
      fields: { requestId: 'req-late' },
    });
    expect(jest.getTimerCount()).toBe(0);
  });

  it.each<[SettlementQueueOptions, RegExp]>([
    [{ maxPending: 0 }, /maxPending/],
    [{ retryBaseMs: -1 }, /retryBaseMs/],
    [{ retryBaseMs: 500, retryMaxMs: 100 }, /retryMaxMs/],
  ])('refuses the options %j with a TypeError naming the option', (options, message) => {
    const store = new MemoryKeyStore();
    expect(() => new SettlementQueue(store, { error: () => {} }, options)).toThrow(TypeError);
    expect(() => new SettlementQueue(store, { error: () => {} }, options)).toThrow(message);
  });
});
