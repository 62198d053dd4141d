// The token classes the mock reports, derived once per answer from the request and the behaviour:
// deterministic defaults (words in, chunks out) that a behaviour's `usage` overrides or extends.
import type { MockUsage } from './types.js';

/** Token counts in protocol-neutral terms; each protocol maps them to its own fields. */
export interface TokenCounts {
  /** Every input token, cached, cache-write and audio ones included (OpenAI's `prompt_tokens`). */
  readonly promptTokens: number;
  /** Every output token, reasoning and audio ones included. */
  readonly completionTokens: number;
  readonly cachedTokens: number;
  readonly cacheWriteTokens: number;
  readonly reasoningTokens: number;
  readonly audioPromptTokens: number;
  readonly audioCompletionTokens: number;
  /** True when the behaviour set `usage`: Chat/Completions then also send their `…_details` objects. */
  readonly detailed: boolean;
}

/**
 * Derives the counts: by default the prompt's words are its uncached text tokens and the chunks its
 * visible output tokens; the behaviour's other classes come on top, and its totals replace the sums.
 */
export function countTokens(
  usage: Readonly<MockUsage> | undefined,
  promptWords: number,
  visibleOutputTokens: number,
): TokenCounts {
  const cachedTokens = usage?.cachedTokens ?? 0;
  const cacheWriteTokens = usage?.cacheWriteTokens ?? 0;
  const reasoningTokens = usage?.reasoningTokens ?? 0;
  const audioPromptTokens = usage?.audioPromptTokens ?? 0;
  const audioCompletionTokens = usage?.audioCompletionTokens ?? 0;
  return {
    promptTokens: usage?.promptTokens ?? promptWords + cachedTokens + cacheWriteTokens + audioPromptTokens,
    completionTokens:
      usage?.completionTokens ?? visibleOutputTokens + reasoningTokens + audioCompletionTokens,
    cachedTokens,
    cacheWriteTokens,
    reasoningTokens,
    audioPromptTokens,
    audioCompletionTokens,
    detailed: usage !== undefined,
  };
}
