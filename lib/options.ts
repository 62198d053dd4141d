// The option checks every factory shares: each reads one option, fills its default, and throws a
// TypeError naming the factory, the option and the value (`retry: attempts must be a positive
// integer, got 0`) at construction, so nothing is re-validated per request.

/** The longest delay Node's timers honour; a longer one fires after 1 ms instead. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Shows a bad value in a message: strings quoted, objects and arrays by kind, never their contents. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 64 ? `${value.slice(0, 61)}...` : value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

/**
 * Reads the options of one factory. Each method returns the checked value, or the fallback when
 * the option is `undefined`.
 *
 * @example
 * const read = new OptionReader('concurrencyGate');
 * const max = read.positiveInteger('max', options.max);
 * const queueTimeoutMs = read.durationMs('queueTimeoutMs', options.queueTimeoutMs, 30_000);
 */
export class OptionReader {
  constructor(readonly owner: string) {}

  /** Throws the TypeError for `name`: `<owner>: <name> must be <rule>, got <value>`. */
  fail(name: string, rule: string, value: unknown): never {
    throw new TypeError(`${this.owner}: ${name} must be ${rule}, got ${describeValue(value)}`);
  }

  /** The options object itself (`{}` when absent and `required` is false). */
  options<T extends object>(value: T | undefined, required = false): T {
    if (value === undefined && !required) return {} as T;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      if (value === undefined) throw new TypeError(`${this.owner}: options are required`);
      this.fail('options', 'an object', value);
    }
    return value;
  }

  /** A nested options object, or `{}` when absent. */
  object<T extends object>(name: string, value: T | undefined): T {
    if (value === undefined) return {} as T;
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      this.fail(name, 'an object', value);
    return value;
  }

  /** A safe integer >= 1. Without a fallback the option is required. */
  positiveInteger(name: string, value: unknown, fallback?: number, max = Number.MAX_SAFE_INTEGER): number {
    return this.integer(name, value, fallback, 1, max);
  }

  /** A safe integer >= 0. */
  nonNegativeInteger(name: string, value: unknown, fallback?: number, max = Number.MAX_SAFE_INTEGER): number {
    return this.integer(name, value, fallback, 0, max);
  }

  /** A positive integer, or undefined when absent (an optional limit). */
  optionalPositiveInteger(name: string, value: unknown): number | undefined {
    return value === undefined ? undefined : this.integer(name, value, undefined, 1, Number.MAX_SAFE_INTEGER);
  }

  /** A duration in ms that a timer can hold: an integer from `min` (default 1) to {@link MAX_TIMER_MS}. */
  durationMs(name: string, value: unknown, fallback?: number, min: 0 | 1 = 1): number {
    return this.integer(name, value, fallback, min, MAX_TIMER_MS);
  }

  /** A finite number >= 0 (money, ratios, fractional durations). */
  nonNegativeNumber(name: string, value: unknown, fallback?: number): number {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'number' || !Number.isFinite(resolved) || resolved < 0) {
      this.fail(name, 'a finite number >= 0', value);
    }
    return resolved;
  }

  /** A share: a number from 0 to 1. */
  share(name: string, value: unknown, fallback?: number): number {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'number' || !(resolved >= 0 && resolved <= 1)) {
      this.fail(name, 'a number from 0 to 1', value);
    }
    return resolved;
  }

  /** A finite number > 0. */
  positiveNumber(name: string, value: unknown, fallback?: number): number {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'number' || !Number.isFinite(resolved) || resolved <= 0) {
      this.fail(name, 'a finite number > 0', value);
    }
    return resolved;
  }

  /** A boolean. */
  boolean(name: string, value: unknown, fallback: boolean): boolean {
    const resolved = value ?? fallback;
    if (typeof resolved !== 'boolean') this.fail(name, 'a boolean', value);
    return resolved;
  }

  /** A function. */
  function<F extends (...args: never[]) => unknown>(name: string, value: F | undefined, fallback: F): F;
  function<F extends (...args: never[]) => unknown>(name: string, value: F | undefined): F | undefined;
  function<F extends (...args: never[]) => unknown>(
    name: string,
    value: F | undefined,
    fallback?: F,
  ): F | undefined {
    const resolved = value ?? fallback;
    if (resolved !== undefined && typeof resolved !== 'function') this.fail(name, 'a function', value);
    return resolved;
  }

  /** One of `allowed`. */
  oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], fallback?: T): T {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'string' || !(allowed as readonly string[]).includes(resolved)) {
      this.fail(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
    }
    return resolved as T;
  }

  /** A string of 1 to `maxLength` characters. */
  string(name: string, value: unknown, fallback?: string, maxLength = 256): string {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'string' || resolved.length === 0 || resolved.length > maxLength) {
      this.fail(name, `a string of 1-${maxLength} characters`, value);
    }
    return resolved;
  }

  /** An object with the named methods, e.g. a store or a sink (duck-typed, so copies of llmux mix). */
  implementing<T>(name: string, value: unknown, methods: readonly string[], what: string): T {
    const ok =
      typeof value === 'object' &&
      value !== null &&
      methods.every((method) => typeof (value as Record<string, unknown>)[method] === 'function');
    if (!ok) this.fail(name, what, value);
    return value as T;
  }

  private integer(
    name: string,
    value: unknown,
    fallback: number | undefined,
    min: number,
    max: number,
  ): number {
    const resolved = this.given(name, value, fallback);
    if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min) {
      this.fail(name, min === 1 ? 'a positive integer' : 'a non-negative integer', value);
    }
    if (resolved > max) this.fail(name, `at most ${max}`, value);
    return resolved;
  }

  private given<T>(name: string, value: unknown, fallback: T | undefined): unknown {
    if (value !== undefined) return value;
    if (fallback === undefined) throw new TypeError(`${this.owner}: ${name} is required`);
    return fallback;
  }
}
