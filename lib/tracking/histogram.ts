// Fixed latency buckets for the tracker's rollups: log-spaced bounds from 1 ms to 10 minutes, so a
// percentile over any window is a sum of bucket counts, never a guess made from averages.

/** Bounds per decade: each bucket is about 33% wider than the one before it. */
const STEPS_PER_DECADE = 8;
/** The last finite bound: 10 minutes. */
const MAX_BOUND_MS = 600_000;

function buildBounds(): readonly number[] {
  const bounds: number[] = [];
  for (let step = 0; ; step++) {
    // Four significant digits keep the bounds readable (1, 1.334, 1.778, 2.371, 3.162, …).
    const bound = Number((10 ** (step / STEPS_PER_DECADE)).toPrecision(4));
    if (bound >= MAX_BOUND_MS) break;
    bounds.push(bound);
  }
  bounds.push(MAX_BOUND_MS);
  return Object.freeze(bounds);
}

/**
 * Upper bounds (inclusive, in ms) of the tracker's latency buckets: 1 ms, 1.334 ms, 1.778 ms, …
 * up to 600 000 ms (10 minutes), eight per decade. Bucket `i` holds latencies in
 * `(bounds[i-1], bounds[i]]` (bucket 0 holds `[0, 1]`); one last overflow bucket holds everything
 * above 10 minutes.
 *
 * @example
 * LATENCY_BUCKET_BOUNDS_MS[0]; // 1
 * LATENCY_BUCKET_BOUNDS_MS.at(-1); // 600000
 */
export const LATENCY_BUCKET_BOUNDS_MS: readonly number[] = buildBounds();

/** Number of latency buckets: one per bound, plus the overflow bucket. */
export const LATENCY_BUCKET_COUNT = LATENCY_BUCKET_BOUNDS_MS.length + 1;

/**
 * The bucket a latency falls in: the first whose upper bound is at or above it, found by binary
 * search. Negative latencies count in bucket 0; latencies above 10 minutes in the overflow bucket.
 *
 * @example
 * latencyBucketIndex(1); // 0
 * latencyBucketIndex(1.2); // 1
 */
export function latencyBucketIndex(latencyMs: number): number {
  const bounds = LATENCY_BUCKET_BOUNDS_MS;
  let low = 0;
  let high = bounds.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (latencyMs <= bounds[middle]!) high = middle;
    else low = middle + 1;
  }
  return low;
}

/**
 * The range `[lowMs, highMs]` a bucket covers; the overflow bucket's high end is `Infinity`.
 *
 * @example
 * latencyBucketRange(0); // [0, 1]
 */
export function latencyBucketRange(index: number): [lowMs: number, highMs: number] {
  const bounds = LATENCY_BUCKET_BOUNDS_MS;
  const low = index === 0 ? 0 : bounds[index - 1]!;
  const high = index < bounds.length ? bounds[index]! : Infinity;
  return [low, high];
}

/**
 * The `quantile` (0–1) of a latency histogram, by nearest rank, interpolated linearly inside the
 * bucket holding that rank: the answer lies in the same bucket as the exact value, so it is off
 * by at most that bucket's width. Latencies in the overflow bucket report as 10 minutes.
 * `null` when the histogram is empty.
 *
 * @param counts bucket counts, {@link LATENCY_BUCKET_COUNT} of them starting at `offset`
 * @example
 * latencyPercentile(totals, HISTOGRAM_OFFSET, 0.95); // e.g. 412.7
 */
export function latencyPercentile(
  counts: ArrayLike<number>,
  offset: number,
  quantile: number,
): number | null {
  let total = 0;
  for (let i = 0; i < LATENCY_BUCKET_COUNT; i++) total += counts[offset + i]!;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(quantile * total));
  let before = 0;
  for (let i = 0; i < LATENCY_BUCKET_COUNT; i++) {
    const inBucket = counts[offset + i]!;
    if (before + inBucket >= rank) {
      if (i === LATENCY_BUCKET_COUNT - 1) return MAX_BOUND_MS;
      const [low, high] = latencyBucketRange(i);
      return low + ((high - low) * (rank - before)) / inBucket;
    }
    before += inBucket;
  }
  return MAX_BOUND_MS;
}
