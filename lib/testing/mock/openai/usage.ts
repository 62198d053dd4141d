// OpenAI's usage objects: Chat/Completions' `CompletionUsage` and the Responses API's `ResponseUsage`.
import type { TokenCounts } from '../tokens.js';

/**
 * Chat/Completions usage: `prompt_tokens` includes cached and audio tokens, `completion_tokens` includes
 * reasoning and audio ones. The `…_details` objects appear when the behaviour set `usage`.
 */
export function chatUsage(tokens: TokenCounts): Record<string, unknown> {
  const usage: Record<string, unknown> = {
    prompt_tokens: tokens.promptTokens,
    completion_tokens: tokens.completionTokens,
    total_tokens: tokens.promptTokens + tokens.completionTokens,
  };
  if (tokens.detailed) {
    const promptDetails: Record<string, number> = {
      cached_tokens: tokens.cachedTokens,
      audio_tokens: tokens.audioPromptTokens,
    };
    if (tokens.cacheWriteTokens > 0) promptDetails.cache_write_tokens = tokens.cacheWriteTokens;
    usage.prompt_tokens_details = promptDetails;
    usage.completion_tokens_details = {
      reasoning_tokens: tokens.reasoningTokens,
      audio_tokens: tokens.audioCompletionTokens,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    };
  }
  return usage;
}

/** Responses usage: `input_tokens` includes cached tokens, `output_tokens` includes reasoning ones. */
export function responsesUsage(tokens: TokenCounts): Record<string, unknown> {
  const inputDetails: Record<string, number> = { cached_tokens: tokens.cachedTokens };
  if (tokens.cacheWriteTokens > 0) inputDetails.cache_write_tokens = tokens.cacheWriteTokens;
  return {
    input_tokens: tokens.promptTokens,
    input_tokens_details: inputDetails,
    output_tokens: tokens.completionTokens,
    output_tokens_details: { reasoning_tokens: tokens.reasoningTokens },
    total_tokens: tokens.promptTokens + tokens.completionTokens,
  };
}
