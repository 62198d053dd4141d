// An abortable wait for retry backoff: the wait ends at once when the client leaves, and on every
// path the timer is cleared and the abort listener removed, so nothing outlives the wait. Not
// `timers/promises`: Jest's fake timers cannot drive it, and every wait here is tested with them.

/** Longest wait `setTimeout` honours; Node fires longer delays after 1 ms instead. */
export const MAX_SLEEP_MS = 2_147_483_647;

/**
 * Resolves after `ms` milliseconds, or rejects at once with an `AbortError` (its `cause` is the
 * signal's reason) when `signal` aborts, also when it is already aborted. The timer is unref'd,
 * so a pending wait never keeps the process alive. `ms` must be a finite number from 0 to
 * {@link MAX_SLEEP_MS}; anything else rejects with a TypeError.
 *
 * @example
 * try {
 *   await sleep(decision.delayMs, clientGone.signal);
 * } catch (err) {
 *   if (isAbortError(err)) return; // the client left: no retry
 *   throw err;
 * }
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_SLEEP_MS)) {
    return Promise.reject(
      new TypeError(`sleep: ms must be a number from 0 to ${MAX_SLEEP_MS}, got ${String(ms)}`),
    );
  }
  if (signal?.aborted) return Promise.reject(abortError(signal.reason));
  return new Promise<void>((resolve, reject) => {
    const onTimeout = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal?.reason));
    };
    const timer = setTimeout(onTimeout, ms);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** An `AbortError` as Node's own APIs raise it (`name` 'AbortError', `code` 'ABORT_ERR'). */
export function abortError(reason?: unknown): Error {
  const error = new Error('The operation was aborted', { cause: reason });
  error.name = 'AbortError';
  return Object.assign(error, { code: 'ABORT_ERR' });
}

/** True for an `AbortError`, whether from {@link sleep}, undici, fetch or a DOMException. */
export function isAbortError(value: unknown): boolean {
  return value instanceof Error && value.name === 'AbortError';
}
