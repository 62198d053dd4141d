// The health of one pooled endpoint: in-flight and daily counts, and the cooldown / half-open
// state machine driven by attempt outcomes. Time is passed in by the pool; nothing here sets a timer.
import { msUntilNextUtcMidnight } from '../keys/utc.js';
import type { AttemptOutcome, UpstreamEndpoint } from './source.js';
import { LATENCY_STALE_MS, type StrategyCandidate } from './strategies.js';

/** Where an endpoint stands, as shown by `UpstreamPool.status()`. */
export type UpstreamState = 'healthy' | 'cooling' | 'half-open' | 'disabled';

/** Cooldown settings after defaults; see `UpstreamPoolCooldownOptions`. */
export interface ResolvedCooldown {
  readonly rateLimitMs: number;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly failureThreshold: number;
  readonly nearLimitShare: number;
}

/**
 * Another instance's view of an endpoint, applied by `UpstreamPool.applySharedState`: what
 * `sharePoolState` reads from Redis. Times are absolute epoch ms, so instances' clocks must agree.
 */
export interface SharedUpstreamState {
  /** An operator enabled the endpoint since the last shared state: reset it first, as `enable()`. */
  readonly reset: boolean;
  /** Disabled somewhere: disable here too. False never re-enables (only `reset` does). */
  readonly disabled: boolean;
  /** When the shared cooldown ends, epoch ms; extends the local one only if it ends later. */
  readonly cooldownUntilMs: number;
  /**
   * True: a failure trip somewhere, so the endpoint is half-open once cooled. False while the
   * local cooldown is over: a probe succeeded somewhere, so a local half-open state heals.
   */
  readonly halfOpen: boolean;
}

/** How long the pool suggests waiting when only in-flight limits or a probe block an endpoint. */
const BUSY_RETRY_MS = 1_000;
/** Weight of a new sample in the latency average: about the last five answers count. */
const LATENCY_WEIGHT = 0.3;
/** How long an endpoint near its limit is spared when its upstream gave no reset time. */
const NEAR_LIMIT_UNKNOWN_RESET_MS = 1_000;

/**
 * Mutable health of one endpoint, owned by one pool. The pool reads the clock once per call and
 * passes `nowMs` (epoch ms) and `day` (UTC day number) in, so every decision in a call sees one
 * instant and expiry is computed lazily.
 */
export class UpstreamHealth implements StrategyCandidate {
  inFlight = 0;
  lastPickSeq = 0;
  consecutiveFailures = 0;
  /** Moving average of the time to first byte, ms; 0 until the first answer. */
  latencyMs = 0;
  /** When the last latency sample came, epoch ms. */
  latencyAtMs = 0;
  /** Until when the upstream's rate limit is nearly spent (epoch ms); 0 when it is not. */
  private nearLimitUntilMs = 0;
  /** Failure trips since the last success; the next trip cools for `baseMs * 2^trips`. */
  private trips = 0;
  private cooldownUntilMs = 0;
  /** Set by a failure trip; cleared by a success once the cooldown is over. */
  private halfOpen = false;
  /** A half-open probe is in flight; no other attempt may go until it is released. */
  private probing = false;
  private disabled = false;
  private countDay = Number.NaN;
  private countOnDay = 0;

  constructor(
    readonly endpoint: UpstreamEndpoint,
    readonly index: number,
    readonly weight: number,
    readonly maxConcurrent: number,
    readonly dailyRequestCap: number,
  ) {}

  state(nowMs: number): UpstreamState {
    if (this.disabled) return 'disabled';
    if (nowMs < this.cooldownUntilMs) return 'cooling';
    return this.halfOpen ? 'half-open' : 'healthy';
  }

  isDisabled(): boolean {
    return this.disabled;
  }

  /** Set by a failure trip until a success (or an `enable()`) heals the endpoint. */
  isHalfOpen(): boolean {
    return this.halfOpen;
  }

  /** When the current (or last) cooldown ends, epoch ms; 0 when the endpoint never cooled. */
  cooldownEndsAtMs(): number {
    return this.cooldownUntilMs;
  }

  cooldownRemainingMs(nowMs: number): number {
    return Math.max(0, this.cooldownUntilMs - nowMs);
  }

  requestsOn(day: number): number {
    return day === this.countDay ? this.countOnDay : 0;
  }

  /** True while the upstream last reported a rate-limit window nearly spent and it has not reset. */
  isNearLimit(nowMs: number): boolean {
    return nowMs < this.nearLimitUntilMs;
  }

  /** True when an attempt may start now. */
  canServe(nowMs: number, day: number): boolean {
    return (
      !this.disabled &&
      nowMs >= this.cooldownUntilMs &&
      !(this.halfOpen && this.probing) &&
      this.inFlight < this.maxConcurrent &&
      this.requestsOn(day) < this.dailyRequestCap
    );
  }

  /** For an enabled endpoint that cannot serve: ms until it may, as best known (≥ 0). */
  msUntilServable(nowMs: number, day: number): number {
    let waitMs = this.cooldownRemainingMs(nowMs);
    if (this.requestsOn(day) >= this.dailyRequestCap)
      waitMs = Math.max(waitMs, msUntilNextUtcMidnight(nowMs));
    // A release can come at any moment; one second is the honest guess.
    if (this.inFlight >= this.maxConcurrent || (this.halfOpen && this.probing)) {
      waitMs = Math.max(waitMs, BUSY_RETRY_MS);
    }
    return waitMs;
  }

  recordAcquire(day: number, pickSeq: number): void {
    if (day !== this.countDay) {
      this.countDay = day;
      this.countOnDay = 0;
    }
    this.countOnDay++;
    this.inFlight++;
    this.lastPickSeq = pickSeq;
    if (this.halfOpen) this.probing = true;
  }

  /**
   * Applies how an attempt ended. Returns false, changing nothing, when no attempt is in flight
   * on this endpoint: a second release of one lease must neither go below zero nor count twice.
   */
  recordRelease(outcome: AttemptOutcome, nowMs: number, cooldown: ResolvedCooldown): boolean {
    if (this.inFlight === 0) return false;
    this.inFlight--;
    this.learn(outcome, nowMs, cooldown.nearLimitShare);
    const cooling = nowMs < this.cooldownUntilMs;
    if (outcome.ok) {
      this.consecutiveFailures = 0;
      // A success that began before a trip says nothing about the cooldown, which runs its course.
      if (!cooling) {
        this.halfOpen = false;
        this.probing = false;
        this.trips = 0;
      }
      return true;
    }
    switch (outcome.category) {
      case 'auth':
        // Only a 401: the relay's key itself was refused. Nothing a request carries causes it.
        this.disabled = true;
        this.probing = false;
        return true;
      case 'rate_limit': {
        // As long as the upstream says: its Retry-After, else the reset of its spent window.
        const hintMs = outcome.retryAfterMs ?? outcome.limits?.resetMs;
        const waitMs = Math.min(hintMs ?? cooldown.rateLimitMs, cooldown.maxMs);
        this.cooldownUntilMs = Math.max(this.cooldownUntilMs, nowMs + waitMs);
        // A half-open endpoint stays half-open: the next probe goes after the wait.
        this.probing = false;
        return true;
      }
      case 'server':
      case 'network':
      case 'timeout':
        // Failures of attempts started before the trip land here while cooling; they were
        // already paid for by that trip.
        if (cooling) return true;
        this.consecutiveFailures++;
        if (this.halfOpen || this.consecutiveFailures >= cooldown.failureThreshold)
          this.trip(nowMs, cooldown);
        return true;
      default:
        // invalid_request and decode are about the request or its body, and cancelled attempts
        // were stopped by the relay (client left, hedge lost): none says anything of the
        // upstream's health. A probe that ended so proved nothing: the next attempt probes again.
        this.probing = false;
        return true;
    }
  }

  /** An operator's reset: the endpoint is healthy again, whatever it was. */
  enable(): void {
    this.disabled = false;
    this.nearLimitUntilMs = 0;
    this.cooldownUntilMs = 0;
    this.halfOpen = false;
    this.probing = false;
    this.trips = 0;
    this.consecutiveFailures = 0;
  }

  disable(): void {
    this.disabled = true;
    this.probing = false;
  }

  /** Merges another instance's view; see {@link SharedUpstreamState}. */
  applyShared(shared: SharedUpstreamState, nowMs: number): void {
    if (shared.reset) this.enable();
    if (shared.disabled) this.disable();
    if (shared.cooldownUntilMs > this.cooldownUntilMs) this.cooldownUntilMs = shared.cooldownUntilMs;
    if (shared.halfOpen) {
      if (!this.halfOpen) {
        this.halfOpen = true;
        this.probing = false;
      }
    } else if (this.halfOpen && nowMs >= this.cooldownUntilMs) {
      // A probe elsewhere succeeded after the cooldown: the endpoint is healthy here too.
      this.halfOpen = false;
      this.probing = false;
      this.trips = 0;
    }
  }

  /**
   * Raises the count of `day` to `count` (attempts started on that UTC day by every instance).
   * Counts only grow within a day; a count of an earlier day than the one counted is ignored.
   */
  applySharedCount(day: number, count: number): void {
    if (day === this.countDay) {
      if (count > this.countOnDay) this.countOnDay = count;
    } else if (!(day < this.countDay)) {
      this.countDay = day;
      this.countOnDay = count;
    }
  }

  /** What the answer's headers said: its latency, and how much of the upstream's limit is left. */
  private learn(outcome: AttemptOutcome, nowMs: number, nearLimitShare: number): void {
    const latencyMs = outcome.latencyMs;
    // Only answers that served count: an upstream failing fast must not look fastest.
    if (latencyMs !== undefined && outcome.ok) {
      // A figure older than the strategy trusts is replaced, not averaged with.
      const fresh = this.latencyMs !== 0 && nowMs - this.latencyAtMs <= LATENCY_STALE_MS;
      this.latencyMs = fresh ? this.latencyMs + LATENCY_WEIGHT * (latencyMs - this.latencyMs) : latencyMs;
      this.latencyAtMs = nowMs;
    }
    const limits = outcome.limits;
    if (limits !== undefined) {
      this.nearLimitUntilMs =
        limits.headroom < nearLimitShare ? nowMs + (limits.resetMs ?? NEAR_LIMIT_UNKNOWN_RESET_MS) : 0;
    }
  }

  private trip(nowMs: number, cooldown: ResolvedCooldown): void {
    // 2 ** trips overflows to Infinity past ~1023 trips; min() keeps that at maxMs.
    const waitMs = Math.min(cooldown.baseMs * 2 ** this.trips, cooldown.maxMs);
    this.trips++;
    this.cooldownUntilMs = Math.max(this.cooldownUntilMs, nowMs + waitMs);
    this.halfOpen = true;
    this.probing = false;
  }
}
