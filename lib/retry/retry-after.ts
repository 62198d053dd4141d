// Reads an upstream's wait hint (`retry-after-ms`, or `Retry-After` in seconds or as an HTTP
// date) into a bounded, non-negative number of milliseconds. Never throws.

/** Longest wait a hint can yield, whatever the upstream says: one day. */
export const MAX_RETRY_AFTER_HINT_MS = 86_400_000;

const HTTP_DATE_HINT = /^[A-Za-z]{3},? /;

type HeaderValue = string | string[] | undefined;

function first(value: HeaderValue): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The wait an upstream asks for, in ms, or undefined when it gave no usable hint. `retry-after-ms`
 * wins over `retry-after`. Negative, non-numeric and past-date hints give undefined or 0; the
 * result never exceeds {@link MAX_RETRY_AFTER_HINT_MS}.
 *
 * @param nowMs the current time, for HTTP-date hints (injectable for tests)
 */
export function parseRetryAfterMs(
  headers: Record<string, HeaderValue>,
  nowMs: number = Date.now(),
): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined) {
    const value = parseNumber(ms);
    if (value !== undefined) return clamp(value);
  }
  const raw = first(headers['retry-after']);
  if (raw === undefined) return undefined;
  const seconds = parseNumber(raw);
  if (seconds !== undefined) return clamp(seconds * 1000);
  // An HTTP date names its day and month; bare numbers Date.parse would take as years are refused.
  if (!HTTP_DATE_HINT.test(raw) || raw.length > 64) return undefined;
  const date = Date.parse(raw);
  if (Number.isNaN(date)) return undefined;
  return clamp(date - nowMs);
}

function parseNumber(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed.length === 0 || trimmed.length > 20) return undefined;
  const value = Number(trimmed);
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

function clamp(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(Math.ceil(ms), MAX_RETRY_AFTER_HINT_MS);
}

/** Whole seconds for a `Retry-After` header: at least 1, rounded up. */
export function toRetryAfterSeconds(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.max(1, Math.ceil(ms / 1000));
}
