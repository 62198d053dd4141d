// What the Redis-backed pieces share in their options: how they behave while Redis is away.

/** The `onStoreError` modes of every Redis-backed piece. */
export const STORE_ERROR_MODES = ['fail-closed', 'fail-open'] as const;
