// The shipped price catalog (lib/pricing/catalog.json): every entry is well formed, every price is a
// usable number, names are unique and exact, and the models a review found mispriced are there apart.
import { describe, expect, it } from '@jest/globals';
import fs from 'node:fs';

/** The day the catalog was last refreshed: no entry may claim to have been checked after it. */
const CATALOG_DATE = '2026-12-04';
const PROVIDERS = ['openai', 'anthropic', 'google', 'mistral', 'deepseek', 'xai'] as const;
const KINDS = ['chat', 'completion', 'embedding'] as const;

const REQUIRED_FIELDS = [
  'model',
  'provider',
  'kind',
  'inputPerMTokUsd',
  'outputPerMTokUsd',
  'source',
  'checked',
] as const;
const PRICE_FIELDS = [
  'inputPerMTokUsd',
  'cachedInputPerMTokUsd',
  'cacheWritePerMTokUsd',
  'cacheWrite1hPerMTokUsd',
  'outputPerMTokUsd',
  'reasoningPerMTokUsd',
  'audioInputPerMTokUsd',
  'audioOutputPerMTokUsd',
] as const;
const TOKEN_FIELDS = ['contextTokens', 'maxOutputTokens'] as const;
const LONG_CONTEXT_PRICE_FIELDS = [
  'inputPerMTokUsd',
  'outputPerMTokUsd',
  'cachedInputPerMTokUsd',
  'cacheWritePerMTokUsd',
] as const;
const KNOWN_FIELDS = new Set<string>([
  ...REQUIRED_FIELDS,
  ...PRICE_FIELDS,
  ...TOKEN_FIELDS,
  'aliases',
  'longContext',
  'note',
]);

interface LongContext {
  aboveInputTokens: number;
  inputPerMTokUsd: number;
  outputPerMTokUsd: number;
  cachedInputPerMTokUsd?: number;
  cacheWritePerMTokUsd?: number;
}

interface Entry {
  model: string;
  provider: string;
  kind: string;
  aliases?: string[];
  inputPerMTokUsd: number;
  cachedInputPerMTokUsd?: number;
  cacheWritePerMTokUsd?: number;
  cacheWrite1hPerMTokUsd?: number;
  outputPerMTokUsd: number;
  reasoningPerMTokUsd?: number;
  audioInputPerMTokUsd?: number;
  audioOutputPerMTokUsd?: number;
  contextTokens?: number;
  maxOutputTokens?: number;
  longContext?: LongContext;
  source: string;
  checked: string;
  note?: string;
}

interface Catalog {
  version: number;
  updated: string;
  notes: string;
  models: Entry[];
}

const catalog = JSON.parse(
  fs.readFileSync(new URL('../lib/pricing/catalog.json', import.meta.url), 'utf8'),
) as Catalog;
const entries = catalog.models;
/** `it.each` rows: the model id (for the test name) and its entry. */
const rows = entries.map((entry) => [entry.model, entry] as const);

/** A real calendar date written YYYY-MM-DD (rejects 2026-02-30 and friends). */
function isIsoDate(value: unknown): boolean {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return false;
  const date = new Date(`${value}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === value;
}

function isPrice(value: unknown): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isTokenCount(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** Every exact name the catalog answers to: model ids and their aliases. */
function allNames(): string[] {
  return entries.flatMap((entry) => [entry.model, ...(entry.aliases ?? [])]);
}

function entryFor(name: string): Entry | undefined {
  return entries.find((entry) => entry.model === name || (entry.aliases ?? []).includes(name));
}

describe('pricing catalog file', () => {
  it('has the documented top-level shape', () => {
    expect(catalog.version).toBe(1);
    expect(isIsoDate(catalog.updated)).toBe(true);
    expect(catalog.updated <= CATALOG_DATE).toBe(true);
    expect(typeof catalog.notes).toBe('string');
    expect(catalog.notes.length).toBeGreaterThan(0);
    expect(Array.isArray(entries)).toBe(true);
    expect(entries.length).toBeGreaterThan(0);
  });

  it.each(PROVIDERS)('prices models of %s', (provider) => {
    expect(entries.some((entry) => entry.provider === provider)).toBe(true);
  });
});

describe.each(rows)('catalog entry %s', (_model, entry) => {
  it('has every required field with the right type', () => {
    for (const field of REQUIRED_FIELDS) expect(entry).toHaveProperty(field);
    expect(typeof entry.model).toBe('string');
    expect(entry.model.trim()).toBe(entry.model);
    expect(entry.model.length).toBeGreaterThan(0);
    expect(PROVIDERS).toContain(entry.provider);
    expect(KINDS).toContain(entry.kind);
    expect(typeof entry.source).toBe('string');
    expect(typeof entry.checked).toBe('string');
  });

  it('has no fields outside the schema', () => {
    const unknown = Object.keys(entry).filter((field) => !KNOWN_FIELDS.has(field));
    expect(unknown).toEqual([]);
  });

  it('has finite, non-negative prices and positive whole token limits', () => {
    for (const field of PRICE_FIELDS) {
      if (field in entry) expect(isPrice(entry[field])).toBe(true);
    }
    for (const field of TOKEN_FIELDS) {
      if (field in entry) expect(isTokenCount(entry[field])).toBe(true);
    }
  });

  it('was checked on a real date no later than the catalog date', () => {
    expect(isIsoDate(entry.checked)).toBe(true);
    expect(entry.checked <= CATALOG_DATE).toBe(true);
  });

  it('cites an https source', () => {
    const url = new URL(entry.source);
    expect(url.protocol).toBe('https:');
    expect(url.hostname.length).toBeGreaterThan(0);
  });

  it('charges no more for cached input than for fresh input', () => {
    if (entry.cachedInputPerMTokUsd !== undefined) {
      expect(entry.cachedInputPerMTokUsd).toBeLessThanOrEqual(entry.inputPerMTokUsd);
    }
  });

  it('lists aliases as exact, distinct names', () => {
    if (entry.aliases === undefined) return;
    expect(Array.isArray(entry.aliases)).toBe(true);
    expect(entry.aliases.length).toBeGreaterThan(0);
    for (const alias of entry.aliases) {
      expect(typeof alias).toBe('string');
      expect(alias.length).toBeGreaterThan(0);
      expect(alias.trim()).toBe(alias);
      expect(alias).not.toContain('*');
      expect(alias).not.toBe(entry.model);
    }
    expect(new Set(entry.aliases).size).toBe(entry.aliases.length);
  });

  it('has a well-formed long-context tier, when it has one', () => {
    const tier = entry.longContext;
    if (tier === undefined) return;
    expect(isTokenCount(tier.aboveInputTokens)).toBe(true);
    expect(isPrice(tier.inputPerMTokUsd)).toBe(true);
    expect(isPrice(tier.outputPerMTokUsd)).toBe(true);
    for (const field of LONG_CONTEXT_PRICE_FIELDS) {
      if (field in tier) expect(isPrice(tier[field])).toBe(true);
    }
    if (tier.cachedInputPerMTokUsd !== undefined) {
      expect(tier.cachedInputPerMTokUsd).toBeLessThanOrEqual(tier.inputPerMTokUsd);
    }
    if (entry.contextTokens !== undefined) {
      expect(tier.aboveInputTokens).toBeLessThan(entry.contextTokens);
    }
  });

  it('prices embeddings by input only', () => {
    if (entry.kind === 'embedding') expect(entry.outputPerMTokUsd).toBe(0);
  });

  it('carries a note only as non-empty text', () => {
    if (entry.note !== undefined) {
      expect(typeof entry.note).toBe('string');
      expect(entry.note.trim().length).toBeGreaterThan(0);
    }
  });
});

describe('catalog names', () => {
  it('gives every model id and alias to exactly one entry', () => {
    const names = allNames();
    const seen = new Set<string>();
    const duplicates = names.filter((name) => (seen.has(name) ? true : (seen.add(name), false)));
    expect(duplicates).toEqual([]);
  });

  it('has no prefix or glob patterns among model ids', () => {
    expect(entries.filter((entry) => entry.model.includes('*')).map((entry) => entry.model)).toEqual([]);
  });
});

describe('entries the review named', () => {
  it.each(['gpt-5', 'gpt-4.5-preview', 'chatgpt-4o-latest', 'o1', 'o1-mini', 'o3', 'o3-pro'])(
    '%s has an entry of its own',
    (model) => {
      const entry = entries.find((candidate) => candidate.model === model);
      expect(entry).toBeDefined();
      expect(entry?.provider).toBe('openai');
    },
  );

  it.each([
    ['o1', 'o1-mini'],
    ['o3', 'o3-pro'],
  ])('%s and %s are priced differently', (first, second) => {
    const a = entryFor(first);
    const b = entryFor(second);
    expect(a).toBeDefined();
    expect(b).toBeDefined();
    expect(a).not.toBe(b);
    const differs = a?.inputPerMTokUsd !== b?.inputPerMTokUsd || a?.outputPerMTokUsd !== b?.outputPerMTokUsd;
    expect(differs).toBe(true);
  });

  it.each([
    ['gpt-4o-2024-08-06', 'gpt-4o'],
    ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-5'],
    ['deepseek-chat', 'deepseek-v4-flash'],
    ['deepseek-reasoner', 'deepseek-v4-flash'],
  ])('the exact name %s is billed as %s', (alias, model) => {
    expect(entryFor(alias)?.model).toBe(model);
  });
});
