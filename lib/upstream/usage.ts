// Reads OpenAI `usage` objects (chat, completions, embeddings) into the context's Usage shape.
import type { Usage } from '../context.js';

/** The usage in `value` (an OpenAI `usage` object), or undefined when it holds none. */
export function readUsage(value: unknown): Usage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const u = value as Record<string, unknown>;
  const promptTokens = count(u.prompt_tokens ?? u.input_tokens);
  const completionTokens = count(u.completion_tokens ?? u.output_tokens);
  if (promptTokens === undefined && completionTokens === undefined) return undefined;
  const prompt = promptTokens ?? 0;
  const completion = completionTokens ?? 0;
  return {
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: count(u.total_tokens) ?? prompt + completion,
  };
}

/** Above any real request; a larger figure from an upstream is clamped, never trusted into Infinity costs. */
const MAX_TOKENS_REPORTED = 1_000_000_000;

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
    ? Math.min(Math.floor(value), MAX_TOKENS_REPORTED)
    : undefined;
}

/**
 * Where the `usage` value starts in an SSE data payload when it is an object, else -1. Cheap
 * enough for every chunk: streams with usage requested carry `"usage":null` on each one.
 */
export function usageObjectIndex(data: string): number {
  const key = data.lastIndexOf('"usage"');
  if (key === -1) return -1;
  let i = key + 7;
  const length = data.length;
  while (i < length) {
    const c = data.charCodeAt(i);
    if (c === 58 /* : */ || c === 32 || c === 9 || c === 10 || c === 13) i++;
    else break;
  }
  return data.charCodeAt(i) === 123 /* { */ ? i : -1;
}
