// Pricing: exact names and aliases in any letter case (never a prefix), the host's table over the
// catalog, catalog files and the TypeErrors naming a bad entry, and `costOf` for every token class,
// the long-context tier and counts an upstream (or a host) got wrong.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  costOf,
  DEFAULT_PRICING,
  loadPricing,
  Pricing,
  type ModelPrice,
  type PriceCatalog,
  type Usage,
} from '../lib/index.js';

/** Every class at its own rate, and a tier above 1 000 prompt tokens. */
const FULL: ModelPrice = {
  inputPerMTokUsd: 2,
  cachedInputPerMTokUsd: 0.5,
  cacheWritePerMTokUsd: 2.5,
  outputPerMTokUsd: 8,
  reasoningPerMTokUsd: 10,
  audioInputPerMTokUsd: 40,
  audioOutputPerMTokUsd: 80,
  longContext: {
    aboveInputTokens: 1_000,
    inputPerMTokUsd: 4,
    outputPerMTokUsd: 12,
    cachedInputPerMTokUsd: 1,
    cacheWritePerMTokUsd: 5,
  },
};
/** Only the base rates: every class falls back to input or output. */
const BARE: ModelPrice = { inputPerMTokUsd: 2, outputPerMTokUsd: 8 };
const M = 1_000_000;

function usage(promptTokens: number, completionTokens: number, classes: Partial<Usage> = {}): Usage {
  return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens, ...classes };
}

describe('Pricing lookups', () => {
  const pricing = new Pricing();

  it.each([
    ['gpt-4o', 'gpt-4o'],
    ['GPT-4o', 'gpt-4o'],
    ['GPT-4O', 'gpt-4o'],
    ['gpt-4o-2024-08-06', 'gpt-4o'],
    ['GPT-4o-2024-11-20', 'gpt-4o'],
    ['Claude-3-5-Sonnet-Latest', 'claude-3-5-sonnet-20241022'],
    ['deepseek-chat', 'deepseek-v4-flash'],
    ['o1-mini', 'o1-mini'],
    ['o3-pro', 'o3-pro'],
  ])('finds %s at the price of %s', (asked, listed) => {
    expect(pricing.priceOf(asked)).toEqual(DEFAULT_PRICING[listed]);
    expect(pricing.has(asked)).toBe(true);
  });

  it.each([['gpt-4o-2099-01-01'], ['o1-mini-2099'], ['gpt-4o-x'], ['claude'], [''], [' gpt-4o']])(
    'knows no price for %j',
    (asked) => {
      expect(pricing.priceOf(asked)).toBeUndefined();
      expect(pricing.has(asked)).toBe(false);
    },
  );

  it.each([
    ['o1-mini', 'o1'],
    ['o3-pro', 'o3'],
    ['gpt-4o-mini', 'gpt-4o'],
  ])('never prices %s as %s, its prefix', (longer, prefix) => {
    expect(pricing.priceOf(longer)).not.toEqual(pricing.priceOf(prefix));
    const onlyPrefix = new Pricing(
      { [prefix]: { inputPerMTokUsd: 1, outputPerMTokUsd: 1 } },
      { catalog: false },
    );
    expect(onlyPrefix.priceOf(longer)).toBeUndefined();
  });

  it('prices a model of the host table over the catalog', () => {
    const host = new Pricing({ 'gpt-4o': { inputPerMTokUsd: 1, outputPerMTokUsd: 3 } });
    expect(host.priceOf('gpt-4o')).toEqual({ inputPerMTokUsd: 1, outputPerMTokUsd: 3 });
    expect(host.priceOf('o3')).toEqual(DEFAULT_PRICING['o3']);
  });

  it('prices a host model named in another letter case over the catalog, whatever case is asked', () => {
    const host = new Pricing({ 'GPT-4o': { inputPerMTokUsd: 1, outputPerMTokUsd: 3 } });
    expect(host.priceOf('gpt-4o')).toEqual({ inputPerMTokUsd: 1, outputPerMTokUsd: 3 });
    expect(host.priceOf('GPT-4o')).toEqual({ inputPerMTokUsd: 1, outputPerMTokUsd: 3 });
  });

  it('knows only the host table with catalog: false', () => {
    const host = new Pricing({ mine: { inputPerMTokUsd: 1, outputPerMTokUsd: 3 } }, { catalog: false });
    expect(host.has('mine')).toBe(true);
    expect(host.has('gpt-4o')).toBe(false);
    expect(host.costUsd('gpt-4o', usage(10, 10))).toBeUndefined();
  });

  it('takes another table as its catalog', () => {
    const other = new Pricing({}, { catalog: { house: BARE } });
    expect(other.priceOf('HOUSE')).toEqual(BARE);
    expect(other.has('gpt-4o')).toBe(false);
  });

  it('refuses a host price that is not one, naming the model and the field', () => {
    expect(() => new Pricing({ bad: { inputPerMTokUsd: -1, outputPerMTokUsd: 1 } })).toThrow(
      /bad\.inputPerMTokUsd/,
    );
    expect(() => new Pricing(null as never)).toThrow(TypeError);
  });

  it('counts every lookup of a model without a price, and no other', () => {
    const counted = new Pricing();
    counted.priceOf('gpt-4o');
    counted.has('nope');
    expect(counted.unknownModelLookups).toBe(0);
    counted.priceOf('nope');
    counted.costUsd('nope', usage(1, 1));
    counted.priceOf(undefined);
    expect(counted.unknownModelLookups).toBe(3);
  });

  it('makes a pricing with overrides over its own prices, leaving itself unchanged', () => {
    const base = new Pricing({ mine: { inputPerMTokUsd: 1, outputPerMTokUsd: 3 } });
    const deployment = base.with({ 'gpt-4o': { inputPerMTokUsd: 9, outputPerMTokUsd: 9 } });
    expect(deployment.priceOf('gpt-4o')).toEqual({ inputPerMTokUsd: 9, outputPerMTokUsd: 9 });
    expect(deployment.priceOf('mine')).toEqual({ inputPerMTokUsd: 1, outputPerMTokUsd: 3 });
    expect(deployment.priceOf('GPT-4o-2024-08-06')).toEqual(DEFAULT_PRICING['gpt-4o']);
    expect(base.priceOf('gpt-4o')).toEqual(DEFAULT_PRICING['gpt-4o']);
  });

  it('checks the overrides given to with()', () => {
    expect(() => new Pricing().with({ bad: { inputPerMTokUsd: 1, outputPerMTokUsd: NaN } })).toThrow(
      /bad\.outputPerMTokUsd/,
    );
  });
});

describe('loadPricing', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'llmux-pricing-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function file(name: string, content: unknown): string {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  it('reads every model and alias of a catalog file into a table', () => {
    const catalog: PriceCatalog = {
      version: 1,
      models: [
        { model: 'house-large', aliases: ['house-large-2026'], inputPerMTokUsd: 3, outputPerMTokUsd: 15 },
        { model: 'house-small', inputPerMTokUsd: 0.1, outputPerMTokUsd: 0.4, cachedInputPerMTokUsd: 0.01 },
      ],
    };
    const table = loadPricing(file('ok.json', catalog));
    expect(Object.keys(table).sort()).toEqual(['house-large', 'house-large-2026', 'house-small']);
    expect(table['house-large-2026']).toEqual({ inputPerMTokUsd: 3, outputPerMTokUsd: 15 });
    const pricing = new Pricing(table, { catalog: false });
    expect(pricing.costUsd('HOUSE-LARGE-2026', usage(M, 0))).toBe(3);
  });

  it('reads a file URL', () => {
    const path = file('url.json', { models: [{ model: 'x', inputPerMTokUsd: 1, outputPerMTokUsd: 1 }] });
    expect(Object.keys(loadPricing(new URL(`file://${path}`)))).toEqual(['x']);
  });

  it.each([
    [
      'a duplicate alias',
      {
        models: [
          { model: 'a', inputPerMTokUsd: 1, outputPerMTokUsd: 1 },
          { model: 'b', aliases: ['a'], inputPerMTokUsd: 1, outputPerMTokUsd: 1 },
        ],
      },
      /models\[1\] names "a" twice/,
    ],
    [
      'a negative price',
      {
        models: [
          { model: 'a', inputPerMTokUsd: 1, outputPerMTokUsd: 1 },
          { model: 'b', inputPerMTokUsd: 1, outputPerMTokUsd: 1, cachedInputPerMTokUsd: -0.1 },
        ],
      },
      /models\[1\]\.cachedInputPerMTokUsd must be a finite number >= 0/,
    ],
    ['a missing model', { models: [{ inputPerMTokUsd: 1, outputPerMTokUsd: 1 }] }, /models\[0\]\.model/],
    [
      'an alias that is not a name',
      { models: [{ model: 'a', aliases: [''], inputPerMTokUsd: 1, outputPerMTokUsd: 1 }] },
      /models\[0\]\.aliases/,
    ],
    [
      'a tier without its size',
      {
        models: [
          {
            model: 'a',
            inputPerMTokUsd: 1,
            outputPerMTokUsd: 1,
            longContext: { inputPerMTokUsd: 2, outputPerMTokUsd: 2 },
          },
        ],
      },
      /models\[0\]\.longContext\.aboveInputTokens/,
    ],
    ['no models array', { version: 1 }, /must hold a models array/],
  ])('throws a TypeError naming %s', (_what, content, message) => {
    const path = file('bad.json', content);
    expect(() => loadPricing(path)).toThrow(TypeError);
    expect(() => loadPricing(path)).toThrow(message);
    expect(() => loadPricing(path)).toThrow(path);
  });

  it('throws on a file that is not JSON', () => {
    expect(() => loadPricing(file('broken.json', '{"models": ['))).toThrow(SyntaxError);
  });
});

describe('costOf', () => {
  it.each<[string, ModelPrice, Usage, number]>([
    ['uncached input at the input price', FULL, usage(1_000, 0), 1_000 * 2],
    ['nothing for nothing', FULL, usage(0, 0), 0],
    [
      'a cached read at cachedInputPerMTokUsd',
      FULL,
      usage(1_000, 0, { cachedTokens: 400 }),
      600 * 2 + 400 * 0.5,
    ],
    [
      'a cached read at the input price when it has none',
      BARE,
      usage(1_000, 0, { cachedTokens: 400 }),
      1_000 * 2,
    ],
    [
      'a cache write at cacheWritePerMTokUsd',
      FULL,
      usage(1_000, 0, { cacheWriteTokens: 1_000 }),
      1_000 * 2.5,
    ],
    [
      'one-hour cache writes (of the cache writes) at cacheWrite1hPerMTokUsd',
      { ...FULL, cacheWrite1hPerMTokUsd: 4 },
      usage(1_000, 0, { cacheWriteTokens: 1_000, cacheWrite1hTokens: 400 }),
      600 * 2.5 + 400 * 4,
    ],
    [
      'one-hour cache writes at the five-minute price when it has none',
      FULL,
      usage(1_000, 0, { cacheWriteTokens: 1_000, cacheWrite1hTokens: 400 }),
      1_000 * 2.5,
    ],
    [
      'no more one-hour writes than cache writes',
      { ...FULL, cacheWrite1hPerMTokUsd: 4 },
      usage(1_000, 0, { cacheWriteTokens: 100, cacheWrite1hTokens: 500 }),
      100 * 4 + 900 * 2,
    ],
    [
      'a cache write at the input price when it has none',
      BARE,
      usage(500, 0, { cacheWriteTokens: 500 }),
      500 * 2,
    ],
    [
      'audio input at audioInputPerMTokUsd',
      FULL,
      usage(1_000, 0, { audioPromptTokens: 100 }),
      900 * 2 + 100 * 40,
    ],
    [
      'audio input at the input price when it has none',
      BARE,
      usage(1_000, 0, { audioPromptTokens: 100 }),
      2_000,
    ],
    ['output at the output price', FULL, usage(0, 1_000), 1_000 * 8],
    ['reasoning at reasoningPerMTokUsd', FULL, usage(0, 1_000, { reasoningTokens: 600 }), 400 * 8 + 600 * 10],
    [
      'reasoning at the output price when it has none',
      BARE,
      usage(0, 1_000, { reasoningTokens: 600 }),
      8_000,
    ],
    [
      'audio output at audioOutputPerMTokUsd',
      FULL,
      usage(0, 1_000, { audioCompletionTokens: 10 }),
      990 * 8 + 800,
    ],
    [
      'audio output at the output price when it has none',
      BARE,
      usage(0, 10, { audioCompletionTokens: 10 }),
      80,
    ],
    [
      'every class of one request at its rate',
      FULL,
      usage(1_000, 100, {
        cachedTokens: 100,
        cacheWriteTokens: 200,
        audioPromptTokens: 300,
        reasoningTokens: 20,
        audioCompletionTokens: 30,
      }),
      400 * 2 + 100 * 0.5 + 200 * 2.5 + 300 * 40 + 50 * 8 + 20 * 10 + 30 * 80,
    ],
    ['a prompt at the tier size at the base prices', FULL, usage(1_000, 100), 1_000 * 2 + 100 * 8],
    [
      'a prompt above the tier size, the whole request at the tier',
      FULL,
      usage(1_001, 100),
      1_001 * 4 + 100 * 12,
    ],
    [
      'cached reads and writes above the tier at its rates',
      FULL,
      usage(2_000, 0, { cachedTokens: 1_000, cacheWriteTokens: 500 }),
      500 * 4 + 1_000 * 1 + 500 * 5,
    ],
    [
      'reasoning above the tier at its own rate',
      FULL,
      usage(2_000, 100, { reasoningTokens: 100 }),
      2_000 * 4 + 100 * 10,
    ],
    [
      'cached reads above a tier without a cached rate at the base cached rate',
      { ...FULL, longContext: { aboveInputTokens: 10, inputPerMTokUsd: 4, outputPerMTokUsd: 12 } },
      usage(100, 0, { cachedTokens: 100 }),
      100 * 0.5,
    ],
    ['cached reads never above the prompt', FULL, usage(1_000, 0, { cachedTokens: 5_000 }), 1_000 * 0.5],
    [
      'cache writes never above what the cached reads left',
      FULL,
      usage(1_000, 0, { cachedTokens: 800, cacheWriteTokens: 800 }),
      800 * 0.5 + 200 * 2.5,
    ],
    [
      'audio input never above what the cache left',
      FULL,
      usage(1_000, 0, { cachedTokens: 900, audioPromptTokens: 900 }),
      900 * 0.5 + 100 * 40,
    ],
    ['reasoning never above the completion', FULL, usage(0, 100, { reasoningTokens: 1_000 }), 100 * 10],
    [
      'audio output never above what reasoning left',
      FULL,
      usage(0, 100, { reasoningTokens: 90, audioCompletionTokens: 90 }),
      90 * 10 + 10 * 80,
    ],
    ['a huge prompt clamped to a billion tokens', BARE, usage(1e30, 0), 1e9 * 2],
    ['a negative prompt as none', BARE, usage(-1_000, 10), 10 * 8],
    ['a NaN completion as none', BARE, usage(10, NaN), 10 * 2],
    ['a fractional count rounded down', BARE, usage(10.9, 0), 10 * 2],
    ['a negative cached count as none', FULL, usage(1_000, 0, { cachedTokens: -500 }), 1_000 * 2],
    ['a negative cache-write count as none', FULL, usage(0, 0, { cacheWriteTokens: -1_000 }), 0],
    ['a NaN cached count as none', FULL, usage(1_000, 0, { cachedTokens: NaN }), 1_000 * 2],
    ['a NaN reasoning count as none', FULL, usage(0, 100, { reasoningTokens: NaN }), 100 * 8],
    ['a negative audio output count as none', FULL, usage(0, 100, { audioCompletionTokens: -100 }), 100 * 8],
  ])('bills %s', (_what, price, counts, microUsd) => {
    expect(costOf(price, counts)).toBeCloseTo(microUsd / M, 12);
  });

  it('prices through Pricing.costUsd at the model of the request', () => {
    const pricing = new Pricing({ full: FULL }, { catalog: false });
    expect(pricing.costUsd('FULL', usage(1_000, 0, { cachedTokens: 400 }))).toBeCloseTo(1_400 / M, 12);
  });

  /** A price whose optional rates are present or not, its tier (if any) dearer than its base. */
  const priceArb: fc.Arbitrary<ModelPrice> = fc
    .record({
      input: fc.double({ min: 0, max: 100, noNaN: true }),
      output: fc.double({ min: 0, max: 100, noNaN: true }),
      cached: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined }),
      cacheWrite: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined }),
      reasoning: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined }),
      audioIn: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined }),
      audioOut: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined }),
      tier: fc.option(
        fc.record({
          above: fc.integer({ min: 1, max: 5_000 }),
          factor: fc.double({ min: 1, max: 4, noNaN: true }),
        }),
        { nil: undefined },
      ),
    })
    .map((r) => {
      const price: ModelPrice = { inputPerMTokUsd: r.input, outputPerMTokUsd: r.output };
      if (r.cached !== undefined) price.cachedInputPerMTokUsd = r.cached;
      if (r.cacheWrite !== undefined) price.cacheWritePerMTokUsd = r.cacheWrite;
      if (r.reasoning !== undefined) price.reasoningPerMTokUsd = r.reasoning;
      if (r.audioIn !== undefined) price.audioInputPerMTokUsd = r.audioIn;
      if (r.audioOut !== undefined) price.audioOutputPerMTokUsd = r.audioOut;
      if (r.tier !== undefined) {
        price.longContext = {
          aboveInputTokens: r.tier.above,
          inputPerMTokUsd: r.input * r.tier.factor,
          outputPerMTokUsd: r.output * r.tier.factor,
        };
        if (r.cached !== undefined) price.longContext.cachedInputPerMTokUsd = r.cached * r.tier.factor;
        if (r.cacheWrite !== undefined) price.longContext.cacheWritePerMTokUsd = r.cacheWrite * r.tier.factor;
      }
      return price;
    });
  const count = fc.integer({ min: 0, max: 10_000 });
  /** The tokens of each class, which add up to the totals. */
  const partsArb = fc.record({
    uncached: count,
    cached: count,
    cacheWrite: count,
    audioIn: count,
    visible: count,
    reasoning: count,
    audioOut: count,
  });
  type Parts = typeof partsArb extends fc.Arbitrary<infer T> ? T : never;
  const usageOfParts = (p: Parts): Usage =>
    usage(p.uncached + p.cached + p.cacheWrite + p.audioIn, p.visible + p.reasoning + p.audioOut, {
      cachedTokens: p.cached,
      cacheWriteTokens: p.cacheWrite,
      audioPromptTokens: p.audioIn,
      reasoningTokens: p.reasoning,
      audioCompletionTokens: p.audioOut,
    });

  it('never bills less for more tokens of any class, and never bills below zero', () => {
    fc.assert(
      fc.property(
        priceArb,
        partsArb,
        fc.constantFrom<keyof Parts>(
          'uncached',
          'cached',
          'cacheWrite',
          'audioIn',
          'visible',
          'reasoning',
          'audioOut',
        ),
        fc.integer({ min: 1, max: 10_000 }),
        (price, parts, part, more) => {
          const before = costOf(price, usageOfParts(parts));
          const after = costOf(price, usageOfParts({ ...parts, [part]: parts[part] + more }));
          expect(before).toBeGreaterThanOrEqual(0);
          expect(after).toBeGreaterThanOrEqual(before);
        },
      ),
    );
  });

  it('never bills below zero or NaN, whatever the counts', () => {
    const anyCount = fc.oneof(
      fc.double(),
      fc.integer(),
      fc.constantFrom(NaN, Infinity, -Infinity, -1, 1e300),
      fc.constant(undefined),
    );
    fc.assert(
      fc.property(
        priceArb,
        fc.tuple(anyCount, anyCount, anyCount, anyCount, anyCount, anyCount, anyCount),
        (price, [prompt, completion, cached, cacheWrite, audioIn, reasoning, audioOut]) => {
          const cost = costOf(price, {
            promptTokens: prompt as number,
            completionTokens: completion as number,
            totalTokens: 0,
            cachedTokens: cached,
            cacheWriteTokens: cacheWrite,
            audioPromptTokens: audioIn,
            reasoningTokens: reasoning,
            audioCompletionTokens: audioOut,
          });
          expect(Number.isFinite(cost)).toBe(true);
          expect(cost).toBeGreaterThanOrEqual(0);
        },
      ),
    );
  });
});
