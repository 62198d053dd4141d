// Runs tasks with a concurrency limit and one shared AbortSignal: the first failure aborts the
// rest, and the result is known only once every task has settled, so nothing is left running.
import pLimit, { type LimitFunction } from 'p-limit';
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

/** The state of one {@link fanOut} call: its limiter, its shared controller, its first error. */
class FanOutRun<T> {
  private readonly controller = new AbortController();
  private readonly limit: LimitFunction;
  private failed = false;
  private firstError: unknown = undefined;

  constructor(concurrency: number) {
    this.limit = pLimit({ concurrency, rejectOnClear: true });
  }

  async all(tasks: readonly FanOutTask<T>[]): Promise<T[]> {
    const settled = await Promise.allSettled(tasks.map((task) => this.limit(this.start, task)));
    if (this.failed) throw this.firstError;
    // Not failed, so every task fulfilled.
    return settled.map((outcome) => (outcome as PromiseFulfilledResult<T>).value);
  }

  /** Records the first failure, aborts the running tasks and drops the queued ones. */
  fail(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.firstError = error;
    this.limit.clearQueue();
    this.controller.abort(error);
  }

  // An arrow property: p-limit calls it detached, with the task as its argument.
  private readonly start = async (task: FanOutTask<T>): Promise<T> => {
    const signal = this.controller.signal;
    // A task dequeued in the same tick as the failure must not start.
    if (signal.aborted) throw signal.reason;
    try {
      return await task(signal);
    } catch (error) {
      this.fail(error);
      throw error;
    }
  };
}
