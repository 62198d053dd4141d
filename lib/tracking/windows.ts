// The time windows `RequestTracker.stats()` answers for, and which rollup series and how many of
// its buckets each one sums. Windows are whole UTC buckets, so every answer is exact.

/** The granularity of a rollup series: its bucket length and how many buckets it keeps. */
export type RollupGranularity = 'minute' | 'hour' | 'day';

/**
 * A window of {@link RequestTracker.stats}. Calendar windows cover the current bucket so far:
 * `minute` (this UTC minute), `hour` (this UTC hour), `day` (since 00:00 UTC today). Trailing
 * windows cover the current bucket plus the ones before it, so they span between one bucket less
 * than their length and their length: `5m`, `15m`, `1h` (minute buckets), `6h`, `24h`, `48h`
 * (hour buckets), `7d`, `30d` (UTC-day buckets).
 */
export type StatsWindow =
  'minute' | 'hour' | 'day' | '5m' | '15m' | '1h' | '6h' | '24h' | '48h' | '7d' | '30d';

/** Which series a window reads and how many buckets of it, ending with the current one. */
export interface WindowSpec {
  granularity: RollupGranularity;
  buckets: number;
}

/** Bucket length in ms of each granularity. UTC days: epoch time has no DST and no leap seconds. */
export const GRANULARITY_MS: Readonly<Record<RollupGranularity, number>> = Object.freeze({
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
});

/** Buckets kept per granularity: 60 minutes, 48 hours, 30 UTC days. */
export const GRANULARITY_SLOTS: Readonly<Record<RollupGranularity, number>> = Object.freeze({
  minute: 60,
  hour: 48,
  day: 30,
});

const SPECS: Readonly<Record<StatsWindow, WindowSpec>> = Object.freeze({
  minute: { granularity: 'minute', buckets: 1 },
  hour: { granularity: 'hour', buckets: 1 },
  day: { granularity: 'day', buckets: 1 },
  '5m': { granularity: 'minute', buckets: 5 },
  '15m': { granularity: 'minute', buckets: 15 },
  '1h': { granularity: 'minute', buckets: 60 },
  '6h': { granularity: 'hour', buckets: 6 },
  '24h': { granularity: 'hour', buckets: 24 },
  '48h': { granularity: 'hour', buckets: 48 },
  '7d': { granularity: 'day', buckets: 7 },
  '30d': { granularity: 'day', buckets: 30 },
});

/**
 * Every accepted {@link StatsWindow}, shortest first.
 *
 * @example
 * STATS_WINDOWS.includes('15m'); // true
 */
export const STATS_WINDOWS: readonly StatsWindow[] = Object.freeze(Object.keys(SPECS) as StatsWindow[]);

/**
 * True when `value` names a {@link StatsWindow}.
 *
 * @example
 * isStatsWindow('1h'); // true
 * isStatsWindow('2h'); // false
 */
export function isStatsWindow(value: unknown): value is StatsWindow {
  return typeof value === 'string' && Object.hasOwn(SPECS, value);
}

/**
 * The series and bucket count behind a window.
 *
 * @example
 * windowSpec('24h'); // { granularity: 'hour', buckets: 24 }
 */
export function windowSpec(window: StatsWindow): WindowSpec {
  return SPECS[window];
}
