// UTC calendar arithmetic for daily quotas and spend buckets. Only epoch arithmetic and
// `getUTC*` are used: the host's time zone can never move a day boundary.

/** Milliseconds in a UTC day (UTC has no DST; leap seconds are not counted by epoch time). */
export const MS_PER_UTC_DAY = 86_400_000;

/** The UTC day containing `ms`, as whole days since 1970-01-01 (negative before it). */
export function utcDayNumber(ms: number): number {
  return Math.floor(ms / MS_PER_UTC_DAY);
}

/**
 * The UTC calendar date containing `ms`, as `YYYY-MM-DD`.
 *
 * @throws RangeError when `ms` is not finite or falls outside the years 0000–9999.
 * @example
 * utcDay(Date.parse('2026-03-29T00:59:59Z')); // '2026-03-29', whatever TZ says
 */
export function utcDay(ms: number): string {
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(ms) || !(year >= 0 && year <= 9999)) {
    throw new RangeError(`utcDay: ms must be an instant in the years 0000-9999, got ${String(ms)}`);
  }
  const month = date.getUTCMonth() + 1;
  const day = date.getUTCDate();
  return `${String(year).padStart(4, '0')}-${month < 10 ? '0' : ''}${month}-${day < 10 ? '0' : ''}${day}`;
}

/**
 * Milliseconds from `ms` to the next 00:00:00.000 UTC, in `(0, MS_PER_UTC_DAY]`: exactly at
 * midnight the next one is a whole day away.
 */
export function msUntilNextUtcMidnight(ms: number): number {
  return MS_PER_UTC_DAY - (((ms % MS_PER_UTC_DAY) + MS_PER_UTC_DAY) % MS_PER_UTC_DAY);
}
