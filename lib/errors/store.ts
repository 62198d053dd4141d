// The error a store (key store, distributed gate, pool state) raises when its backend cannot be
// reached: infrastructure of every kind throws it, and keyAuth and the gates answer it with 503.

/**
 * Thrown (as a rejection) by a Redis-backed store when Redis cannot be reached in time:
 * connection refused or lost, `commandTimeoutMs` passed, Redis loading or busy. Transient:
 * the store reconnects by itself. `keyAuth` answers it with 503 `store_unavailable`.
 *
 * @example
 * try {
 *   await store.admit(request);
 * } catch (err) {
 *   if (isStoreUnavailableError(err)) res.setHeader('retry-after', '1');
 * }
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  /** Stable machine-readable code. */
  readonly code = 'store_unavailable';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** True when `value` is a {@link StoreUnavailableError} (also across duplicated package copies). */
export function isStoreUnavailableError(value: unknown): value is StoreUnavailableError {
  return (
    value instanceof StoreUnavailableError ||
    (value instanceof Error && value.name === 'StoreUnavailableError')
  );
}
