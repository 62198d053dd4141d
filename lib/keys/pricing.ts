// Token prices per model and the cost of a request from its usage. A default table for common
// models; the host's table is merged over it. Unknown models cost 0 and are counted.

/** USD per one million tokens. */
export interface ModelPrice {
  inputPerMTokUsd: number;
  outputPerMTokUsd: number;
}

/** A price table: model name → price. Dated snapshots (`gpt-4o-2024-08-06`) use their base's price. */
export type PricingTable = Record<string, ModelPrice>;

/** List prices of common models (USD per 1M tokens). Override or extend with your own table. */
export const DEFAULT_PRICING: Readonly<PricingTable> = Object.freeze({
  'gpt-4o': { inputPerMTokUsd: 2.5, outputPerMTokUsd: 10 },
  'gpt-4o-mini': { inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 },
  'gpt-4.1': { inputPerMTokUsd: 2, outputPerMTokUsd: 8 },
  'gpt-4.1-mini': { inputPerMTokUsd: 0.4, outputPerMTokUsd: 1.6 },
  'gpt-4.1-nano': { inputPerMTokUsd: 0.1, outputPerMTokUsd: 0.4 },
  'gpt-4-turbo': { inputPerMTokUsd: 10, outputPerMTokUsd: 30 },
  'gpt-3.5-turbo': { inputPerMTokUsd: 0.5, outputPerMTokUsd: 1.5 },
  o1: { inputPerMTokUsd: 15, outputPerMTokUsd: 60 },
  o3: { inputPerMTokUsd: 2, outputPerMTokUsd: 8 },
  'o3-mini': { inputPerMTokUsd: 1.1, outputPerMTokUsd: 4.4 },
  'o4-mini': { inputPerMTokUsd: 1.1, outputPerMTokUsd: 4.4 },
  'text-embedding-3-small': { inputPerMTokUsd: 0.02, outputPerMTokUsd: 0 },
  'text-embedding-3-large': { inputPerMTokUsd: 0.13, outputPerMTokUsd: 0 },
  'text-embedding-ada-002': { inputPerMTokUsd: 0.1, outputPerMTokUsd: 0 },
});

const MAX_CACHED_LOOKUPS = 1_000;

/**
 * Prices requests. Lookups are exact first, then by the longest table entry the model starts
 * with followed by `-` (dated snapshots); results are cached (bounded).
 *
 * @example
 * const pricing = new Pricing({ 'my-finetune': { inputPerMTokUsd: 3, outputPerMTokUsd: 12 } });
 * pricing.costUsd('gpt-4o-mini', 1200, 300);
 */
export class Pricing {
  private readonly table: Map<string, ModelPrice>;
  private readonly resolved = new Map<string, ModelPrice | null>();
  private unknown = 0;

  /** @param overrides the host's table, merged over {@link DEFAULT_PRICING}. */
  constructor(overrides: PricingTable = {}) {
    this.table = new Map(Object.entries(DEFAULT_PRICING));
    for (const [model, price] of Object.entries(overrides)) {
      if (
        typeof price !== 'object' ||
        price === null ||
        !isPrice(price.inputPerMTokUsd) ||
        !isPrice(price.outputPerMTokUsd)
      ) {
        throw new TypeError(`pricing: ${model} needs non-negative inputPerMTokUsd and outputPerMTokUsd`);
      }
      this.table.set(model, {
        inputPerMTokUsd: price.inputPerMTokUsd,
        outputPerMTokUsd: price.outputPerMTokUsd,
      });
    }
  }

  /** How many times a model without a price was costed (at 0). */
  get unknownModelLookups(): number {
    return this.unknown;
  }

  /** The price of `model`, or undefined when the table has none. */
  priceOf(model: string): ModelPrice | undefined {
    const cached = this.resolved.get(model);
    if (cached !== undefined) return cached ?? undefined;
    let price = this.table.get(model);
    if (price === undefined) {
      let best = '';
      for (const name of this.table.keys()) {
        if (
          name.length > best.length &&
          model.startsWith(name) &&
          model.charCodeAt(name.length) === 45 /* - */
        ) {
          best = name;
        }
      }
      if (best !== '') price = this.table.get(best);
    }
    if (this.resolved.size >= MAX_CACHED_LOOKUPS) this.resolved.clear();
    this.resolved.set(model, price ?? null);
    return price;
  }

  /** USD for the tokens; an unknown (or absent) model costs 0 and is counted. */
  costUsd(model: string | undefined, promptTokens: number, completionTokens: number): number {
    const price = model === undefined ? undefined : this.priceOf(model);
    if (price === undefined) {
      this.unknown++;
      return 0;
    }
    return (promptTokens * price.inputPerMTokUsd + completionTokens * price.outputPerMTokUsd) / 1_000_000;
  }
}

function isPrice(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}
