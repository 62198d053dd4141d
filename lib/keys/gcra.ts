// GCRA (generic cell rate algorithm) for "N per minute" limits with a full-minute burst, over
// plain numbers: the whole state of a window is one theoretical arrival time (TAT, ms).
//
// Each unit of cost pushes the TAT 60 000 / N ms further; a request fits while the TAT it would
// leave is at most one minute ahead of now. A fresh window therefore takes N units at once, then
// refills at N per minute. As with any token bucket, a 60 s sliding window can see up to about
// 2N (a full burst, then the refill); over any span of L ms at most N + N * L / 60 000 units pass.
// Every function is pure and reads no clock: the caller passes `nowMs` and stores the TAT.

/** The window length: limits are per minute. */
export const GCRA_WINDOW_MS = 60_000;

/**
 * Slack for floating-point error in the TAT (about 4 ulps of an epoch time in ms), so a cost
 * that fits exactly is never refused by rounding.
 */
const EPSILON_MS = 1e-3;

/** The answer of {@link gcraConsume}. */
export type GcraDecision =
  | {
      allowed: true;
      /** The TAT to store: the request is admitted only once the caller commits it. */
      tatMs: number;
    }
  | {
      allowed: false;
      /**
       * Whole ms to wait before the same cost fits (at least 1), or `undefined` when it never
       * can: a cost above the whole per-minute limit.
       */
      retryAfterMs: number | undefined;
    };

/**
 * Checks whether `cost` units fit at `nowMs` in a window of `limitPerMinute`, given its TAT
 * (`0` for a fresh window). Pure: on `allowed` the caller stores the returned `tatMs` (or
 * discards it, when another limit refuses the request, and nothing has changed).
 *
 * Preconditions (the store validates them): `limitPerMinute` > 0, `cost` >= 0, all finite.
 *
 * @example
 * let tat = 0;
 * const decision = gcraConsume(tat, 1, Date.now(), 60);
 * if (decision.allowed) tat = decision.tatMs;
 */
export function gcraConsume(
  tatMs: number,
  cost: number,
  nowMs: number,
  limitPerMinute: number,
): GcraDecision {
  if (cost > limitPerMinute) return { allowed: false, retryAfterMs: undefined };
  const next = (tatMs > nowMs ? tatMs : nowMs) + (cost * GCRA_WINDOW_MS) / limitPerMinute;
  const earliestMs = next - GCRA_WINDOW_MS;
  if (earliestMs - nowMs <= EPSILON_MS) return { allowed: true, tatMs: next };
  return { allowed: false, retryAfterMs: Math.ceil(earliestMs - nowMs - EPSILON_MS) };
}

/**
 * Corrects a window by `delta` units after the fact (a token estimate replaced by the real
 * count at settlement): positive `delta` charges more, negative gives back. The TAT never goes
 * below `nowMs`, so giving back cannot create capacity beyond a full burst.
 */
export function gcraAdjust(tatMs: number, delta: number, nowMs: number, limitPerMinute: number): number {
  const adjusted = (tatMs > nowMs ? tatMs : nowMs) + (delta * GCRA_WINDOW_MS) / limitPerMinute;
  return adjusted > nowMs ? adjusted : nowMs;
}

/** What is left of a window, for the `RateLimit-*` headers. */
export interface GcraState {
  /** Whole units that would fit now, in `[0, limitPerMinute]`. */
  remaining: number;
  /** Whole ms until the window is full again (a whole burst fits), at least 0. */
  resetMs: number;
}

/** The state of a window at `nowMs`. */
export function gcraState(tatMs: number, nowMs: number, limitPerMinute: number): GcraState {
  const aheadMs = tatMs > nowMs ? tatMs - nowMs : 0;
  const fits = Math.floor(((GCRA_WINDOW_MS - aheadMs + EPSILON_MS) * limitPerMinute) / GCRA_WINDOW_MS);
  return {
    remaining: fits < 0 ? 0 : fits > limitPerMinute ? limitPerMinute : fits,
    resetMs: aheadMs <= EPSILON_MS ? 0 : Math.ceil(aheadMs - EPSILON_MS),
  };
}
