// Runs tasks with a concurrency limit and one shared AbortSignal: the first failure aborts the
// rest, and the result is known only once every task has settled, so nothing is left running.
import { abortError } from './retry/sleep.js';

/** One unit of work for {@link fanOut}; it should stop promptly when `signal` aborts. */
export type FanOutTask<T> = (signal: AbortSignal) => Promise<T>;

/** Options of {@link fanOut}. */
export interface FanOutOptions {
  /** Most tasks running at once: a positive integer, or `Infinity` for all at once. Default `Infinity`. */
  concurrency?: number;
  /** Aborting it aborts every task and rejects with its reason. */
  signal?: AbortSignal;
}

/**
 * Runs `tasks` at most `concurrency` at a time, each with one shared AbortSignal, and resolves
 * with their results in the order of `tasks`.
 *
 * The first failure (a task's rejection, or the outer `signal` aborting) aborts the shared signal
 * with that error as its reason; tasks not yet started never start. The returned promise rejects
 * with that first error, but only after every started task has settled, so no task outlives the
 * call. The listener on the outer signal is removed on every path.
 *
 * @example
 * const [models, usage] = await fanOut(
 *   [(signal) => fetchModels(signal), (signal) => fetchUsage(signal)],
 *   { concurrency: 2, signal: clientGone.signal },
 * );
 */
export async function fanOut<T>(tasks: readonly FanOutTask<T>[], options: FanOutOptions = {}): Promise<T[]> {
  const concurrency = options.concurrency ?? Number.POSITIVE_INFINITY;
  if (!((Number.isSafeInteger(concurrency) || concurrency === Number.POSITIVE_INFINITY) && concurrency > 0)) {
    throw new TypeError(
      `fanOut: concurrency must be a positive integer or Infinity, got ${String(options.concurrency)}`,
    );
  }
  const outer = options.signal;
  if (outer?.aborted) throw outer.reason ?? abortError();
  const run = new FanOutRun<T>(concurrency);
  const onOuterAbort = (): void => run.fail(outer?.reason ?? abortError());
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  try {
    return await run.all(tasks);
  } finally {
    outer?.removeEventListener('abort', onOuterAbort);
  }
}

/** The state of one {@link fanOut} call: its shared controller, its first error, its next task. */
class FanOutRun<T> {
  private readonly controller = new AbortController();
  private failed = false;
  private firstError: unknown = undefined;
  private next = 0;

  constructor(private readonly concurrency: number) {}

  async all(tasks: readonly FanOutTask<T>[]): Promise<T[]> {
    const results = new Array<T>(tasks.length);
    // `concurrency` workers, each taking the next task until none is left or one failed: tasks
    // not yet started never start after a failure.
    const workers = Math.min(this.concurrency, tasks.length);
    const running: Promise<void>[] = [];
    for (let i = 0; i < workers; i++) running.push(this.work(tasks, results));
    await Promise.all(running);
    if (this.failed) throw this.firstError;
    return results;
  }

  /** Records the first failure and aborts the running tasks. */
  fail(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.firstError = error;
    this.controller.abort(error);
  }

  private async work(tasks: readonly FanOutTask<T>[], results: T[]): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted && this.next < tasks.length) {
      const index = this.next++;
      try {
        results[index] = await tasks[index]!(signal);
      } catch (error) {
        this.fail(error);
      }
    }
  }
}
