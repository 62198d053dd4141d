// The price catalog: list prices of current OpenAI, Anthropic, Google, Mistral, DeepSeek and xAI
// models (catalog.json, sourced and dated in SOURCES.md), and the loader for a host's own file.
import { readFileSync } from 'node:fs';
import { checkPrice, type ModelPrice } from './price.js';

/** A price table: exact model name → price. */
export type PricingTable = Record<string, ModelPrice>;

/** One entry of a catalog file: a model, the exact aliases billed like it, its price and its source. */
export interface CatalogEntry extends ModelPrice {
  model: string;
  aliases?: string[];
  provider?: string;
  kind?: 'chat' | 'completion' | 'embedding';
  source?: string;
  checked?: string;
  note?: string;
}

/** A catalog file: `{ "models": [ … ] }` (see `lib/pricing/catalog.json`). */
export interface PriceCatalog {
  version?: number;
  updated?: string;
  models: CatalogEntry[];
}

/** The table of a parsed catalog: every model and alias, each a checked price. Throws a TypeError naming a bad entry. */
export function pricingTableOf(catalog: unknown, what = 'catalog'): PricingTable {
  const models = (catalog as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) throw new TypeError(`pricing: ${what} must hold a models array`);
  const table: PricingTable = Object.create(null) as PricingTable;
  models.forEach((entry: unknown, index) => {
    const at = `${what}.models[${index}]`;
    const model = (entry as { model?: unknown } | null)?.model;
    if (typeof model !== 'string' || model.length === 0)
      throw new TypeError(`pricing: ${at}.model must be a model id`);
    const price = checkPrice(entry, at);
    const aliases = (entry as { aliases?: unknown }).aliases ?? [];
    if (!Array.isArray(aliases) || !aliases.every((alias) => typeof alias === 'string' && alias.length > 0)) {
      throw new TypeError(`pricing: ${at}.aliases must be an array of model ids`);
    }
    for (const name of [model, ...(aliases as string[])]) {
      if (Object.hasOwn(table, name))
        throw new TypeError(`pricing: ${at} names ${JSON.stringify(name)} twice in ${what}`);
      table[name] = price;
    }
  });
  return table;
}

/**
 * Reads a catalog file (the format of `lib/pricing/catalog.json`) into a price table: every model
 * and its aliases, exact names only. Throws a TypeError naming the entry at fault.
 *
 * @example
 * const pricing = new Pricing(loadPricing('./prices/negotiated.json'));
 */
export function loadPricing(file: string | URL): PricingTable {
  return pricingTableOf(JSON.parse(readFileSync(file, 'utf8')) as unknown, String(file));
}

const BUILTIN = JSON.parse(readFileSync(new URL('./catalog.json', import.meta.url), 'utf8')) as PriceCatalog;

/** The built-in catalog's table: list prices of every model in `catalog.json`, and their aliases. */
export const DEFAULT_PRICING: Readonly<PricingTable> = Object.freeze(pricingTableOf(BUILTIN, 'catalog.json'));

/** When the built-in catalog's prices were last checked (YYYY-MM-DD). */
export const CATALOG_UPDATED: string = BUILTIN.updated ?? 'unknown';

/** The models of the built-in catalog (no aliases), for labels that must stay few. */
export const CATALOG_MODELS: readonly string[] = Object.freeze(BUILTIN.models.map((entry) => entry.model));
