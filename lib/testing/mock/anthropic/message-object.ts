// The Anthropic message the mock answers with, and its usage: `input_tokens` excludes the cache
// read and cache write tokens, which Anthropic reports beside it.
import type { TokenCounts } from '../tokens.js';
import type { ToolCall } from '../tool-call.js';

/** Everything a message says, decided before the first byte goes out. */
export interface MessagePlan {
  readonly id: string;
  readonly model: string;
  readonly toolUseId: string;
  readonly toolCall: ToolCall | undefined;
  readonly text: string;
  /** `stop_reason`, or undefined when the generation fails. */
  readonly stopReason: string | undefined;
  /** The token counts, or undefined under `omitUsage`. */
  readonly tokens: TokenCounts | undefined;
}

/** Anthropic's usage object with `outputTokens` output tokens. */
export function messageUsage(tokens: TokenCounts, outputTokens: number): Record<string, number> {
  return {
    input_tokens: tokens.promptTokens - tokens.cachedTokens - tokens.cacheWriteTokens,
    cache_creation_input_tokens: tokens.cacheWriteTokens,
    cache_read_input_tokens: tokens.cachedTokens,
    output_tokens: outputTokens,
  };
}

/** The complete message of a JSON answer. */
export function messageObject(plan: MessagePlan): Record<string, unknown> {
  const call = plan.toolCall;
  const block =
    call === undefined
      ? { type: 'text', text: plan.text }
      : {
          type: 'tool_use',
          id: plan.toolUseId,
          name: call.name,
          input: JSON.parse(call.argumentsJson) as unknown,
        };
  const message: Record<string, unknown> = {
    id: plan.id,
    type: 'message',
    role: 'assistant',
    model: plan.model,
    content: [block],
    stop_reason: plan.stopReason ?? null,
    stop_sequence: null,
  };
  if (plan.tokens !== undefined) message.usage = messageUsage(plan.tokens, plan.tokens.completionTokens);
  return message;
}
