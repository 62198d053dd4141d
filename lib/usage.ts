// The one usage model: every token class any provider reports, read by each wire protocol into
// the same shape, so the context, accounting, the tracker, the sink and metrics all see one thing.

/**
 * Token counts of a request by class. Each class is a part of a total: cached, cache-write and
 * audio input tokens are prompt tokens; reasoning and audio output tokens are completion tokens.
 */
export interface TokenClasses {
  /** Prompt tokens read from the provider's prompt cache (billed at the cached-input price). */
  cachedTokens: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic bills them apart). */
  cacheWriteTokens: number;
  /** Completion tokens spent on reasoning (billed as output unless priced apart). */
  reasoningTokens: number;
  /** Prompt tokens of audio input. */
  audioPromptTokens: number;
  /** Completion tokens of audio output. */
  audioCompletionTokens: number;
}

/**
 * Token usage of one request, normalized from any protocol. The classes are always set by llmux's
 * readers; a host that sets a usage itself may leave them out (they count as 0).
 */
export interface Usage extends Partial<TokenClasses> {
  /**
   * Of `cacheWriteTokens`, those written for one hour (Anthropic's `ttl: "1h"`), priced at the
   * model's `cacheWrite1hPerMTokUsd`. Set only when the provider reported some; not stored apart
   * (spend rows count them among `cacheWriteTokens`, at the price they were billed).
   */
  cacheWrite1hTokens?: number;
  /** Every input token: cached, cache-write and audio ones included (OpenAI's `prompt_tokens`). */
  promptTokens: number;
  /** Every output token: reasoning and audio ones included. */
  completionTokens: number;
  /** `promptTokens + completionTokens` unless the provider said otherwise. */
  totalTokens: number;
}

/** The names of the token classes, in one order for stores and metrics. */
export const TOKEN_CLASSES = [
  'cachedTokens',
  'cacheWriteTokens',
  'reasoningTokens',
  'audioPromptTokens',
  'audioCompletionTokens',
] as const satisfies readonly (keyof TokenClasses)[];

/** Above any real request; a larger figure from an upstream is clamped, never trusted into Infinity costs. */
const MAX_TOKENS_REPORTED = 1_000_000_000;

/** A token count an upstream reported, or undefined when the value is not a count. */
export function tokenCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
    ? Math.min(Math.floor(value), MAX_TOKENS_REPORTED)
    : undefined;
}

/**
 * A usage from its parts: the totals first, then the classes (absent ones are 0). A class is
 * never more than its total, whatever the upstream said.
 */
export function usageOf(
  promptTokens: number,
  completionTokens: number,
  classes: Partial<TokenClasses> & { cacheWrite1hTokens?: number } = {},
  totalTokens?: number,
): Usage & TokenClasses {
  const cached = Math.min(classes.cachedTokens ?? 0, promptTokens);
  const cacheWrite = Math.min(classes.cacheWriteTokens ?? 0, promptTokens - cached);
  const cacheWrite1h = Math.min(classes.cacheWrite1hTokens ?? 0, cacheWrite);
  const usage: Usage & TokenClasses = {
    promptTokens,
    completionTokens,
    totalTokens: totalTokens ?? promptTokens + completionTokens,
    cachedTokens: cached,
    cacheWriteTokens: cacheWrite,
    reasoningTokens: Math.min(classes.reasoningTokens ?? 0, completionTokens),
    audioPromptTokens: Math.min(classes.audioPromptTokens ?? 0, promptTokens),
    audioCompletionTokens: Math.min(classes.audioCompletionTokens ?? 0, completionTokens),
  };
  // Only when reported: most usages have none, and their shape stays the common one.
  if (cacheWrite1h > 0) usage.cacheWrite1hTokens = cacheWrite1h;
  return usage;
}
