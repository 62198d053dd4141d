// Validation helpers shared by the mock's options and behaviours: each failure is a TypeError that
// names where it happened, the field and the value, so a test author sees their typo at once.

/** Throws `TypeError("<where>: <name> must be <expected>, got <value>")`. */
export function fail(where: string, name: string, expected: string, value: unknown): never {
  throw new TypeError(`${where}: ${name} must be ${expected}, got ${show(value)}`);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/** An integer in `[min, max]`, or `fallback` when `value` is undefined. */
export function integerIn(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(where, name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** A boolean, or false when `value` is undefined. */
export function flag(where: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') fail(where, name, 'a boolean', value);
  return value;
}

/** A boolean, or undefined when `value` is undefined (for fields whose absence means "decide by the request"). */
export function optionalFlag(where: string, name: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') fail(where, name, 'a boolean', value);
  return value;
}

/** A string, or undefined. */
export function optionalString(where: string, name: string, value: unknown): string | undefined {
  if (value !== undefined && typeof value !== 'string') fail(where, name, 'a string', value);
  return value;
}

/** One of `allowed`, or undefined. */
export function optionalOneOf<T extends string>(
  where: string,
  name: string,
  value: unknown,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(where, name, `one of ${allowed.map((item) => JSON.stringify(item)).join(', ')}`, value);
  }
  return value as T;
}
