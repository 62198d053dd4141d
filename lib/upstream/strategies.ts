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
export type UpstreamStrategyName = 'round-robin' | 'random' | 'least-connections' | 'weighted';

/** The names {@link createStrategy} accepts. */
export const STRATEGY_NAMES: readonly UpstreamStrategyName[] = [
  'round-robin',
  'random',
  'least-connections',
  'weighted',
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
 *
 * @example
 * const strategy = createStrategy('weighted', { upstreamCount: 2, random: Math.random });
 */
export function createStrategy(
  name: UpstreamStrategyName,
  options: { upstreamCount: number; random: () => number },
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
