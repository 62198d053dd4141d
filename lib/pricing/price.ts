// What a model costs: a price per million tokens for each token class, the long-context tier some
// models charge, and the limits (context, output) the reservation reads. Checked once on the way in.
import { tokenCount, type Usage } from '../usage.js';

/** The prices of a model's whole request above a prompt size (Gemini 2.5 Pro, Claude's 1M beta). */
export interface LongContextPrice {
  /** The tier applies to a request whose prompt is above this many tokens. */
  aboveInputTokens: number;
  inputPerMTokUsd: number;
  outputPerMTokUsd: number;
  cachedInputPerMTokUsd?: number;
  cacheWritePerMTokUsd?: number;
  cacheWrite1hPerMTokUsd?: number;
}

/** USD per one million tokens of each class; a class without its own price costs the base one. */
export interface ModelPrice {
  /** Input (prompt) tokens. */
  inputPerMTokUsd: number;
  /** Output (completion) tokens. */
  outputPerMTokUsd: number;
  /** Prompt tokens read from the cache. Default: `inputPerMTokUsd`. */
  cachedInputPerMTokUsd?: number;
  /** Prompt tokens written to the cache (Anthropic's 5-minute write). Default: `inputPerMTokUsd`. */
  cacheWritePerMTokUsd?: number;
  /** Prompt tokens written to the cache for one hour (Anthropic's `ttl: "1h"`). Default: `cacheWritePerMTokUsd`. */
  cacheWrite1hPerMTokUsd?: number;
  /** Reasoning tokens, where priced apart from output. Default: `outputPerMTokUsd`. */
  reasoningPerMTokUsd?: number;
  /** Audio input tokens. Default: `inputPerMTokUsd`. */
  audioInputPerMTokUsd?: number;
  /** Audio output tokens. Default: `outputPerMTokUsd`. */
  audioOutputPerMTokUsd?: number;
  /** The model's context window, in tokens. */
  contextTokens?: number;
  /** The most output the model can produce, in tokens: what a request without a cap reserves. */
  maxOutputTokens?: number;
  /** The whole request's prices above a prompt size. */
  longContext?: LongContextPrice;
}

const RATE_FIELDS = [
  'cachedInputPerMTokUsd',
  'cacheWritePerMTokUsd',
  'cacheWrite1hPerMTokUsd',
  'reasoningPerMTokUsd',
  'audioInputPerMTokUsd',
  'audioOutputPerMTokUsd',
] as const;

function isRate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isTokens(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/**
 * A checked copy of a price (only its known fields), or throws a TypeError naming `what` and the
 * field at fault.
 */
export function checkPrice(value: unknown, what: string): ModelPrice {
  const fail = (field: string, rule: string): never => {
    throw new TypeError(`pricing: ${what}.${field} must be ${rule}`);
  };
  if (typeof value !== 'object' || value === null)
    throw new TypeError(`pricing: ${what} must be a price object`);
  const p = value as Record<string, unknown>;
  if (!isRate(p.inputPerMTokUsd)) fail('inputPerMTokUsd', 'a finite number >= 0');
  if (!isRate(p.outputPerMTokUsd)) fail('outputPerMTokUsd', 'a finite number >= 0');
  const price: ModelPrice = {
    inputPerMTokUsd: p.inputPerMTokUsd as number,
    outputPerMTokUsd: p.outputPerMTokUsd as number,
  };
  for (const field of RATE_FIELDS) {
    if (p[field] === undefined) continue;
    if (!isRate(p[field])) fail(field, 'a finite number >= 0');
    price[field] = p[field] as number;
  }
  for (const field of ['contextTokens', 'maxOutputTokens'] as const) {
    if (p[field] === undefined) continue;
    if (!isTokens(p[field])) fail(field, 'a positive integer');
    price[field] = p[field] as number;
  }
  if (p.longContext !== undefined) {
    const tier = p.longContext as Record<string, unknown> | null;
    if (typeof tier !== 'object' || tier === null) fail('longContext', 'an object');
    if (!isTokens(tier!.aboveInputTokens)) fail('longContext.aboveInputTokens', 'a positive integer');
    for (const field of ['inputPerMTokUsd', 'outputPerMTokUsd'] as const) {
      if (!isRate(tier![field])) fail(`longContext.${field}`, 'a finite number >= 0');
    }
    const checked: LongContextPrice = {
      aboveInputTokens: tier!.aboveInputTokens as number,
      inputPerMTokUsd: tier!.inputPerMTokUsd as number,
      outputPerMTokUsd: tier!.outputPerMTokUsd as number,
    };
    for (const field of [
      'cachedInputPerMTokUsd',
      'cacheWritePerMTokUsd',
      'cacheWrite1hPerMTokUsd',
    ] as const) {
      if (tier![field] === undefined) continue;
      if (!isRate(tier![field])) fail(`longContext.${field}`, 'a finite number >= 0');
      checked[field] = tier![field] as number;
    }
    price.longContext = checked;
  }
  return price;
}

/**
 * The cost in USD of `usage` at `price`: each class at its own rate (cached reads, cache writes,
 * audio and reasoning apart from plain input and output), the long-context tier for the whole
 * request when its prompt passes the tier's size.
 */
export function costOf(price: ModelPrice, usage: Usage): number {
  const prompt = tokenCount(usage.promptTokens) ?? 0;
  const completion = tokenCount(usage.completionTokens) ?? 0;
  // A class a host set itself is read like a total: a negative or NaN count is none.
  const cached = Math.min(tokenCount(usage.cachedTokens) ?? 0, prompt);
  const cacheWrite = Math.min(tokenCount(usage.cacheWriteTokens) ?? 0, prompt - cached);
  const cacheWrite1h = Math.min(tokenCount(usage.cacheWrite1hTokens) ?? 0, cacheWrite);
  const audioIn = Math.min(tokenCount(usage.audioPromptTokens) ?? 0, prompt - cached - cacheWrite);
  const reasoning = Math.min(tokenCount(usage.reasoningTokens) ?? 0, completion);
  const audioOut = Math.min(tokenCount(usage.audioCompletionTokens) ?? 0, completion - reasoning);
  const tier =
    price.longContext !== undefined && prompt > price.longContext.aboveInputTokens
      ? price.longContext
      : undefined;
  const input = tier?.inputPerMTokUsd ?? price.inputPerMTokUsd;
  const output = tier?.outputPerMTokUsd ?? price.outputPerMTokUsd;
  const cachedRate = tier?.cachedInputPerMTokUsd ?? price.cachedInputPerMTokUsd ?? input;
  const cacheWriteRate = tier?.cacheWritePerMTokUsd ?? price.cacheWritePerMTokUsd ?? input;
  const cacheWrite1hRate = tier?.cacheWrite1hPerMTokUsd ?? price.cacheWrite1hPerMTokUsd ?? cacheWriteRate;
  const micro =
    (prompt - cached - cacheWrite - audioIn) * input +
    cached * cachedRate +
    (cacheWrite - cacheWrite1h) * cacheWriteRate +
    cacheWrite1h * cacheWrite1hRate +
    audioIn * (price.audioInputPerMTokUsd ?? input) +
    (completion - reasoning - audioOut) * output +
    reasoning * (price.reasoningPerMTokUsd ?? output) +
    audioOut * (price.audioOutputPerMTokUsd ?? output);
  return micro / 1_000_000;
}
