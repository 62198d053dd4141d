// Prices requests: the host's table over the built-in catalog, exact model names (and their
// listed aliases) only, every token class at its own rate. A model with no price is known as such,
// never costed at a silent zero.
import type { Usage } from '../usage.js';
import { DEFAULT_PRICING, type PricingTable } from './catalog.js';
import { checkPrice, costOf, type ModelPrice } from './price.js';

/** Options of {@link Pricing}. */
export interface PricingOptions {
  /**
   * The table under the host's: the built-in catalog (`DEFAULT_PRICING`, the default), another
   * table (`loadPricing(file)`), or `false` for none (only the host's own prices count).
   */
  catalog?: Readonly<PricingTable> | false;
}

/**
 * Prices requests by model. A model is found by its exact name or a listed alias (dated
 * snapshots, `-latest` ids), in any letter case; never by prefix, so `o1-mini` is never `o1`.
 *
 * @example
 * const pricing = new Pricing({ 'my-finetune': { inputPerMTokUsd: 3, outputPerMTokUsd: 12 } });
 * pricing.costUsd('gpt-4o-mini', { promptTokens: 1200, completionTokens: 300, totalTokens: 1500, cachedTokens: 1000 });
 */
export class Pricing {
  private readonly table = new Map<string, ModelPrice>();
  private readonly lowerCase = new Map<string, ModelPrice>();
  private unknown = 0;

  /** @param overrides the host's prices, over the catalog. */
  constructor(overrides: PricingTable = {}, options: PricingOptions = {}) {
    if (typeof overrides !== 'object' || overrides === null) {
      throw new TypeError('pricing: the table must be an object of model → price');
    }
    const catalog = options.catalog ?? DEFAULT_PRICING;
    if (catalog !== false) for (const [model, price] of Object.entries(catalog)) this.set(model, price);
    for (const [model, price] of Object.entries(overrides)) this.set(model, checkPrice(price, model));
  }

  /** How many times a model without a price was asked for. */
  get unknownModelLookups(): number {
    return this.unknown;
  }

  /** The price of `model`, or undefined (counted) when it has none. */
  priceOf(model: string | undefined): ModelPrice | undefined {
    // By the lower-case name only: a host's `GPT-4o` must win over the catalog's `gpt-4o` in any case.
    const price = model === undefined ? undefined : this.lowerCase.get(model.toLowerCase());
    if (price === undefined) this.unknown++;
    return price;
  }

  /** True when `model` has a price. */
  has(model: string | undefined): boolean {
    return model !== undefined && this.lowerCase.has(model.toLowerCase());
  }

  /** USD for `usage` on `model`, every class at its rate; undefined when the model has no price. */
  costUsd(model: string | undefined, usage: Usage): number | undefined {
    const price = this.priceOf(model);
    return price === undefined ? undefined : costOf(price, usage);
  }

  /** A pricing with `overrides` over this one's prices (a deployment's own, say). */
  with(overrides: PricingTable): Pricing {
    const merged = new Pricing(overrides, { catalog: Object.fromEntries(this.table) });
    return merged;
  }

  private set(model: string, price: ModelPrice): void {
    this.table.set(model, price);
    this.lowerCase.set(model.toLowerCase(), price);
  }
}
