// One rollup series: a fixed ring of time buckets (minutes, hours or UTC days) holding counts,
// sums and a latency histogram. Buckets are reused in rotation, so memory never grows.
import { LATENCY_BUCKET_COUNT } from './histogram.js';
import type { RequestRecord } from './record.js';

/** Offsets of the counters in a bucket (and in a totals array). */
export const ROLLUP_FIELD = Object.freeze({
  count: 0,
  errors: 1,
  promptTokens: 2,
  completionTokens: 3,
  spendUsd: 4,
  latencySumMs: 5,
  latencyCount: 6,
  ttfbSumMs: 7,
  ttfbCount: 8,
});

const COUNT = ROLLUP_FIELD.count;
const ERRORS = ROLLUP_FIELD.errors;
const PROMPT_TOKENS = ROLLUP_FIELD.promptTokens;
const COMPLETION_TOKENS = ROLLUP_FIELD.completionTokens;
const SPEND_USD = ROLLUP_FIELD.spendUsd;
const LATENCY_SUM_MS = ROLLUP_FIELD.latencySumMs;
const LATENCY_COUNT = ROLLUP_FIELD.latencyCount;
const TTFB_SUM_MS = ROLLUP_FIELD.ttfbSumMs;
const TTFB_COUNT = ROLLUP_FIELD.ttfbCount;

// Bound once: a bare `Infinity` is a global lookup on every use in some hosts (vm contexts).
const MAX_FINITE = Number.MAX_VALUE;

/** Where the latency histogram starts in a bucket (and in a totals array). */
export const HISTOGRAM_OFFSET = 9;

/** Numbers per bucket: the counters, then {@link LATENCY_BUCKET_COUNT} histogram counts. */
export const ROLLUP_STRIDE = HISTOGRAM_OFFSET + LATENCY_BUCKET_COUNT;

/**
 * A fresh, zeroed totals array for {@link RollupSeries.sumInto}: the counters at
 * {@link ROLLUP_FIELD} offsets and the histogram at {@link HISTOGRAM_OFFSET}.
 */
export function emptyTotals(): Float64Array {
  return new Float64Array(ROLLUP_STRIDE);
}

/**
 * A ring of `slots` buckets of `periodMs` each, aligned on the epoch (so UTC minutes, hours and
 * days). All buckets live in one preallocated `Float64Array`; a bucket is zeroed and reused when
 * its period comes round again. Latency is kept as sum and count and as a histogram, so averages
 * and percentiles over several buckets are exact sums, never averages of averages.
 *
 * @example
 * const minutes = new RollupSeries(60, 60_000);
 * minutes.add(Date.now(), record, false, latencyBucketIndex(record.latencyMs));
 * const totals = emptyTotals();
 * minutes.sumInto(totals, Date.now(), 15); // the last 15 minutes
 */
export class RollupSeries {
  /** Number of buckets kept. */
  readonly slots: number;
  /** Length of one bucket in ms. */
  readonly periodMs: number;
  private readonly data: Float64Array;
  /** The period (ms since the epoch / periodMs) each bucket holds; -Infinity for never used. */
  private readonly periods: Float64Array;

  constructor(slots: number, periodMs: number) {
    this.slots = slots;
    this.periodMs = periodMs;
    this.data = new Float64Array(slots * ROLLUP_STRIDE);
    this.periods = new Float64Array(slots).fill(-Infinity);
  }

  /**
   * Adds one finished request, at `nowMs`, to its bucket. A sample older than what its bucket
   * already holds (the clock went back further than the series keeps) is ignored.
   *
   * @param latencyBucket the record's {@link latencyBucketIndex}, computed once for all series
   */
  add(nowMs: number, record: RequestRecord, isError: boolean, latencyBucket: number): void {
    const period = Math.floor(nowMs / this.periodMs);
    const slot = this.slotOf(period);
    const held = this.periods[slot]!;
    if (held > period) return;
    const base = slot * ROLLUP_STRIDE;
    const data = this.data;
    if (held !== period) {
      data.fill(0, base, base + ROLLUP_STRIDE);
      this.periods[slot] = period;
    }
    data[base + COUNT]! += 1;
    if (isError) data[base + ERRORS]! += 1;
    data[base + PROMPT_TOKENS]! += finiteOrZero(record.promptTokens);
    data[base + COMPLETION_TOKENS]! += finiteOrZero(record.completionTokens);
    data[base + SPEND_USD]! += finiteOrZero(record.costUsd);
    const latency = record.latencyMs;
    if (latency >= 0 && latency <= MAX_FINITE) {
      data[base + LATENCY_SUM_MS]! += latency;
      data[base + LATENCY_COUNT]! += 1;
      data[base + HISTOGRAM_OFFSET + latencyBucket]! += 1;
    }
    const ttfb = record.ttfbMs;
    if (ttfb !== undefined && ttfb >= 0 && ttfb <= MAX_FINITE) {
      data[base + TTFB_SUM_MS]! += ttfb;
      data[base + TTFB_COUNT]! += 1;
    }
  }

  /**
   * Adds the `buckets` most recent buckets, ending with the one holding `nowMs`, into `totals`
   * (from {@link emptyTotals}). Buckets whose period has passed out of the window are skipped.
   *
   * @returns the start of the window, ms since the epoch
   */
  sumInto(totals: Float64Array, nowMs: number, buckets: number): number {
    const current = Math.floor(nowMs / this.periodMs);
    const count = Math.min(buckets, this.slots);
    const data = this.data;
    for (let i = 0; i < count; i++) {
      const period = current - i;
      const slot = this.slotOf(period);
      if (this.periods[slot] !== period) continue;
      const base = slot * ROLLUP_STRIDE;
      for (let field = 0; field < ROLLUP_STRIDE; field++) totals[field]! += data[base + field]!;
    }
    return (current - count + 1) * this.periodMs;
  }

  private slotOf(period: number): number {
    const slot = period % this.slots;
    return slot < 0 ? slot + this.slots : slot;
  }
}

function finiteOrZero(value: number): number {
  return value >= -MAX_FINITE && value <= MAX_FINITE ? value : 0;
}
