// Validators for the options the Redis-backed pieces share (prefixes, timeouts, `onStoreError`):
// each throws a TypeError naming the factory, the option and the value, at construction.

/** Shows a bad value in an error message; `String` unless the caller quotes strings. */
export type ShowValue = (value: unknown) => string;

/**
 * `value`, or `fallback` when it is `undefined`. Throws a TypeError
 * (`<owner>: <name> must be a positive integer, got <value>`) for anything but a safe integer ≥ 1.
 *
 * @example
 * const timeoutMs = positiveIntegerOption('RedisKeyStore', 'commandTimeoutMs', options.commandTimeoutMs, 500);
 */
export function positiveIntegerOption(
  owner: string,
  name: string,
  value: number | undefined,
  fallback: number,
  show: ShowValue = String,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`${owner}: ${name} must be a positive integer, got ${show(value)}`);
  }
  return value;
}

/**
 * `value`, or `fallback` when it is `undefined`. Throws a TypeError
 * (`<owner>: <name> must be a string of 1-256 characters, got <value>`) for anything else,
 * `null` included: a caller that takes `null` as "the default" turns it into `undefined` first.
 *
 * @example
 * const prefix = stringOption('RedisSemaphore', 'prefix', options.prefix, 'llmux:');
 */
export function stringOption(
  owner: string,
  name: string,
  value: string | undefined,
  fallback: string,
  show: ShowValue = String,
): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) {
    throw new TypeError(`${owner}: ${name} must be a string of 1-256 characters, got ${show(value)}`);
  }
  return value;
}

/**
 * True for `onStoreError: 'fail-open'`, false for `'fail-closed'` (the default, also for
 * `null`). Throws a TypeError naming `owner` for any other value.
 */
export function failOpenOption(owner: string, value: 'fail-closed' | 'fail-open' | undefined): boolean {
  const onStoreError = value ?? 'fail-closed';
  if (onStoreError !== 'fail-closed' && onStoreError !== 'fail-open') {
    throw new TypeError(
      `${owner}: onStoreError must be 'fail-closed' or 'fail-open', got ${String(onStoreError)}`,
    );
  }
  return onStoreError === 'fail-open';
}
