// How an UpstreamPool chooses among the endpoints that can serve right now. Each strategy is a
// tiny object created per pool, so its state (a weighted cursor) is never shared between pools.

/** What a strategy may read about an eligible endpoint. */
export interface StrategyCandidate {
  /** Position of the endpoint in the pool's `upstreams` option; stable for the pool's life. */
  readonly index: number;
  /** Relative share of picks for `weighted`; a positive number. */
  readonly weight: number;
  /** Attempts on this endpoint that have not been released yet. */
  readonly inFlight: number;
  /** Sequence number of the pool's pick that last chose this endpoint; 0 when never picked. */
  readonly lastPickSeq: number;
  /** Moving average of the upstream's time to first byte in ms; 0 before its first answer. */
  readonly latencyMs: number;
  /** When the last latency sample came, epoch ms by the pool's clock; 0 when none did. */
  readonly latencyAtMs: number;
}

/**
 * Chooses one endpoint among the eligible ones. The pool calls `pick` with a non-empty list of
 * candidates (in `upstreams` order) and uses the candidate it returns, which must be one of them.
 *
 * @example
 * // Always the first eligible upstream: a primary with fallbacks.
 * const primaryFirst: UpstreamStrategy = { name: 'primary-first', pick: (candidates) => candidates[0]! };
 */
export interface UpstreamStrategy {
  /** Name shown in logs and `UpstreamPool.strategy`. */
  readonly name: string;
  /** Returns one element of `candidates` (never empty). */
  pick<C extends StrategyCandidate>(candidates: readonly C[]): C;
}

/** The built-in strategies, see {@link createStrategy}. */
export type UpstreamStrategyName = 'round-robin' | 'random' | 'least-connections' | 'weighted' | 'latency';

/** The names {@link createStrategy} accepts. */
export const STRATEGY_NAMES: readonly UpstreamStrategyName[] = [
  'round-robin',
  'random',
  'least-connections',
  'weighted',
  'latency',
];

/**
 * Creates a built-in strategy for a pool of `upstreamCount` endpoints:
 *
 * - `round-robin`: least recently used, the candidate whose last pick is oldest. Over a stable set
 *   this is a plain cycle; an endpoint that rejoins after a cooldown takes its turn once instead of
 *   receiving a burst to "catch up".
 * - `random`: uniform over the candidates, using `random()` (a number in `[0, 1)`).
 * - `least-connections`: fewest attempts in flight; ties go to the least recently used.
 * - `weighted`: smooth weighted round-robin (as nginx): deterministic, exact shares over every
 *   period of `sum(weights)` picks, and the heavy endpoint's picks are spread, not bunched.
 * - `latency`: power of two choices: of two random candidates, the one with the lower moving
 *   average of time to first byte times its attempts in flight plus one. An endpoint not measured
 *   yet, or not for {@link LATENCY_STALE_MS}, gets one probe at a time ahead of measured ones, so a
 *   slow endpoint is tried again now and then rather than starved on an old figure.
 *
 * @example
 * const strategy = createStrategy('weighted', { upstreamCount: 2, random: Math.random });
 */
export function createStrategy(
  name: UpstreamStrategyName,
  options: { upstreamCount: number; random: () => number; clock?: () => number },
): UpstreamStrategy {
  switch (name) {
    case 'round-robin':
      return roundRobin;
    case 'least-connections':
      return leastConnections;
    case 'random':
      return new RandomStrategy(options.random);
    case 'weighted':
      return new WeightedStrategy(options.upstreamCount);
    case 'latency':
      return new LatencyStrategy(options.random, options.clock ?? Date.now);
  }
}

const roundRobin: UpstreamStrategy = {
  name: 'round-robin',
  pick<C extends StrategyCandidate>(candidates: readonly C[]): C {
    let best = candidates[0]!;
    for (let i = 1; i < candidates.length; i++) {
      const c = candidates[i]!;
      if (c.lastPickSeq < best.lastPickSeq) best = c;
    }
    return best;
  },
};

const leastConnections: UpstreamStrategy = {
  name: 'least-connections',
  pick<C extends StrategyCandidate>(candidates: readonly C[]): C {
    let best = candidates[0]!;
    for (let i = 1; i < candidates.length; i++) {
      const c = candidates[i]!;
      if (c.inFlight < best.inFlight || (c.inFlight === best.inFlight && c.lastPickSeq < best.lastPickSeq)) {
        best = c;
      }
    }
    return best;
  },
};

class RandomStrategy implements UpstreamStrategy {
  readonly name = 'random';
  constructor(private readonly random: () => number) {}

  pick<C extends StrategyCandidate>(candidates: readonly C[]): C {
    // min() guards a random() that returns 1 (or more) from a badly written fake.
    const i = Math.min(Math.floor(this.random() * candidates.length), candidates.length - 1);
    return candidates[Math.max(0, i)]!;
  }
}

/** nginx's smooth weighted round-robin; only eligible endpoints take part in a pick. */
class WeightedStrategy implements UpstreamStrategy {
  readonly name = 'weighted';
  private readonly current: Float64Array;

  constructor(upstreamCount: number) {
    this.current = new Float64Array(upstreamCount);
  }

  pick<C extends StrategyCandidate>(candidates: readonly C[]): C {
    let total = 0;
    let best = candidates[0]!;
    for (const c of candidates) {
      this.current[c.index]! += c.weight;
      total += c.weight;
      if (this.current[c.index]! > this.current[best.index]!) best = c;
    }
    this.current[best.index]! -= total;
    return best;
  }
}

/** After this long without a sample an endpoint's latency is unknown again: it gets probed. */
export const LATENCY_STALE_MS = 10_000;

/** Power of two choices over latency × load (as Finagle's P2C least-loaded with peak EWMA). */
class LatencyStrategy implements UpstreamStrategy {
  readonly name = 'latency';
  constructor(
    private readonly random: () => number,
    private readonly clock: () => number,
  ) {}

  pick<C extends StrategyCandidate>(candidates: readonly C[]): C {
    const n = candidates.length;
    if (n === 1) return candidates[0]!;
    const i = this.index(n);
    // A second index among the other n - 1: two distinct candidates, each pair equally likely.
    let j = this.index(n - 1);
    if (j >= i) j++;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const nowMs = this.clock();
    const costA = this.cost(a, nowMs);
    const costB = this.cost(b, nowMs);
    if (costA !== costB) return costA < costB ? a : b;
    return a.lastPickSeq <= b.lastPickSeq ? a : b;
  }

  private index(n: number): number {
    return Math.max(0, Math.min(Math.floor(this.random() * n), n - 1));
  }

  private cost(c: StrategyCandidate, nowMs: number): number {
    // Unmeasured (or measured too long ago): one probe at a time, before any measured endpoint.
    if (c.latencyMs === 0 || nowMs - c.latencyAtMs > LATENCY_STALE_MS) return c.inFlight === 0 ? 0 : Infinity;
    return c.latencyMs * (c.inFlight + 1);
  }
}
