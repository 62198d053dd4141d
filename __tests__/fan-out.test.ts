// fanOut: the concurrency limit, the shared AbortSignal, and settling only once every task has.
import { describe, expect, it } from '@jest/globals';
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { fanOut, type FanOutTask } from '../lib/fan-out.js';
import { fuzzRuns } from './support/fuzz.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets queued promise callbacks and p-limit's hand-offs run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** A task that waits for its gate, or rejects with the signal's reason when the signal aborts. */
function gatedTask<T>(gate: Promise<T>, started: AbortSignal[]): FanOutTask<T> {
  return (signal) => {
    started.push(signal);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      gate.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  };
}

describe('fanOut', () => {
  it('resolves with the results in the order of the tasks', async () => {
    const results = await fanOut([async () => 'a', () => Promise.resolve('b'), async () => 'c'], {
      concurrency: 2,
    });
    expect(results).toEqual(['a', 'b', 'c']);
  });

  it('resolves an empty list with an empty array', async () => {
    await expect(fanOut([])).resolves.toEqual([]);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses concurrency %d with a TypeError', async (concurrency) => {
    await expect(fanOut([async () => 1], { concurrency })).rejects.toThrow(
      `fanOut: concurrency must be a positive integer or Infinity, got ${concurrency}`,
    );
  });

  it('never runs more than `concurrency` tasks at once', async () => {
    const gates = Array.from({ length: 10 }, () => deferred<number>());
    const started: AbortSignal[] = [];
    const run = fanOut(
      gates.map((gate) => gatedTask(gate.promise, started)),
      { concurrency: 3 },
    );
    await flush();
    expect(started).toHaveLength(3);
    gates[1]!.resolve(1);
    await flush();
    expect(started).toHaveLength(4);
    gates.forEach((gate, i) => gate.resolve(i));
    await expect(run).resolves.toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(started).toHaveLength(10);
  });

  it('aborts the running tasks on the first failure, and never starts the queued ones', async () => {
    const gates = Array.from({ length: 5 }, () => deferred<number>());
    const started: AbortSignal[] = [];
    const run = fanOut(
      gates.map((gate) => gatedTask(gate.promise, started)),
      { concurrency: 3 },
    );
    await flush();
    const failure = new Error('upstream down');
    gates[0]!.reject(failure);
    await expect(run).rejects.toBe(failure);
    expect(started).toHaveLength(3);
    expect(started.every((signal) => signal.aborted && signal.reason === failure)).toBe(true);
  });

  it('rejects only after every started task has settled', async () => {
    const stubborn = deferred<string>();
    let stubbornSettled = false;
    let sawAbort = false;
    const failure = new Error('first');
    let settled = false;
    const run = fanOut<string>([
      async () => {
        throw failure;
      },
      async (signal) => {
        // Ignores the abort: keeps running until the test lets it go.
        signal.addEventListener('abort', () => (sawAbort = true), { once: true });
        const value = await stubborn.promise;
        stubbornSettled = true;
        return value;
      },
    ]).finally(() => (settled = true));
    run.catch(() => undefined);
    await flush();
    expect(sawAbort).toBe(true);
    expect(settled).toBe(false);
    stubborn.resolve('late');
    await expect(run).rejects.toBe(failure);
    expect(stubbornSettled).toBe(true);
  });

  it('aborts every task and rejects with the reason when the outer signal aborts', async () => {
    const outer = new AbortController();
    const started: AbortSignal[] = [];
    const never = new Promise<number>(() => undefined);
    const run = fanOut([gatedTask(never, started), gatedTask(never, started), gatedTask(never, started)], {
      concurrency: 2,
      signal: outer.signal,
    });
    await flush();
    expect(started).toHaveLength(2);
    const reason = new Error('client left');
    outer.abort(reason);
    await expect(run).rejects.toBe(reason);
    expect(started).toHaveLength(2);
    expect(started.every((signal) => signal.aborted)).toBe(true);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
  });

  it('starts nothing when the outer signal is already aborted', async () => {
    const reason = new Error('gone');
    let started = 0;
    await expect(fanOut([async () => started++], { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(started).toBe(0);
  });

  it.each([
    ['success', async () => 1],
    [
      'failure',
      async () => {
        throw new Error('no');
      },
    ],
  ])('leaves no listener on the outer signal after %s', async (_label, task) => {
    const outer = new AbortController();
    await fanOut([task, task], { signal: outer.signal }).catch(() => undefined);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
  });

  it('holds the limit, the order and the first error under random interleavings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.boolean(), { maxLength: 12 }),
        async (s, concurrency, failures) => {
          let running = 0;
          let maxRunning = 0;
          let firstError: Error | undefined;
          const tasks = failures.map((fails, i): FanOutTask<number> => async () => {
            running++;
            maxRunning = Math.max(maxRunning, running);
            try {
              await s.schedule(Promise.resolve(), `task ${i}`);
              if (fails) {
                const error = new Error(`task ${i}`);
                firstError ??= error;
                throw error;
              }
              return i;
            } finally {
              running--;
            }
          });
          let runningAtEnd = -1;
          const run = fanOut(tasks, { concurrency }).then(
            (values) => ({ values, runningAtEnd: (runningAtEnd = running) }),
            (error: unknown) => ({ error, runningAtEnd: (runningAtEnd = running) }),
          );
          const outcome = await s.waitFor(run);
          expect(runningAtEnd).toBe(0);
          expect(maxRunning).toBeLessThanOrEqual(concurrency);
          if (firstError === undefined) {
            expect(outcome).toEqual({ values: failures.map((_, i) => i), runningAtEnd: 0 });
          } else {
            expect((outcome as { error: unknown }).error).toBe(firstError);
          }
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });
});
