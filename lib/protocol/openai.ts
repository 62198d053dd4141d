// The OpenAI Chat Completions, Completions and Embeddings protocol: `stream_options.include_usage`
// asked for on streams, `usage` (with its token details) read from JSON and the usage chunk,
// `data: [DONE]` ending a complete stream, `{"error": …}` bodies and frames.
import { estimatePrompt, openAiImageTokens } from '../accounting/estimate.js';
import type { RequestContext } from '../context.js';
import { errors, OPENAI_ERROR_SHAPE, type LlmuxError } from '../errors/llmux-error.js';
import { tokenCount, usageOf, type Usage } from '../usage.js';
import type { ProtocolRoute, StreamReader, StreamVerdict, UpstreamRequest, WireProtocol } from './types.js';

/**
 * The usage in an OpenAI `usage` object (chat, completions, embeddings; Responses' fields are read
 * too), with `prompt_tokens_details` and `completion_tokens_details`; undefined when it has none.
 */
export function readOpenAiUsage(value: unknown): Usage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const u = value as Record<string, unknown>;
  const prompt = tokenCount(u.prompt_tokens ?? u.input_tokens);
  const completion = tokenCount(u.completion_tokens ?? u.output_tokens);
  if (prompt === undefined && completion === undefined) return undefined;
  const promptDetails = detailsOf(u.prompt_tokens_details ?? u.input_tokens_details);
  const completionDetails = detailsOf(u.completion_tokens_details ?? u.output_tokens_details);
  return usageOf(
    prompt ?? 0,
    completion ?? 0,
    {
      cachedTokens: tokenCount(promptDetails.cached_tokens),
      audioPromptTokens: tokenCount(promptDetails.audio_tokens),
      reasoningTokens: tokenCount(completionDetails.reasoning_tokens),
      audioCompletionTokens: tokenCount(completionDetails.audio_tokens),
    },
    tokenCount(u.total_tokens),
  );
}

function detailsOf(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
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

/** The error object of an error frame (`event: error`, or data holding `"error"`), or undefined. */
export function streamErrorOf(data: string, isErrorEvent: boolean): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return isErrorEvent ? { message: 'upstream stream error' } : undefined;
  }
  const errorField = (parsed as { error?: unknown } | null)?.error;
  if (errorField !== undefined && errorField !== null) return errorField;
  return isErrorEvent ? (parsed ?? { message: 'upstream stream error' }) : undefined;
}

/** Reads an OpenAI chat or completions stream: usage, error frames, `[DONE]`. */
class OpenAiStreamReader implements StreamReader {
  complete = false;

  constructor(
    private readonly ctx: RequestContext,
    private readonly hideUsage: boolean,
  ) {}

  read(data: string | undefined, event: string | undefined): StreamVerdict {
    if (data === undefined) return 'relay';
    if (data === '[DONE]') {
      this.complete = true;
      return 'relay';
    }
    if (event === 'error' || data.includes('"error"')) {
      const upstreamError = streamErrorOf(data, event === 'error');
      if (upstreamError !== undefined) return { upstreamError };
    }
    this.ctx.streamedChunks++;
    if (usageObjectIndex(data) !== -1) return this.readUsageChunk(data);
    return 'relay';
  }

  /** Records usage; drops the usage-only chunk the client did not ask for. */
  private readUsageChunk(data: string): StreamVerdict {
    let parsed: { usage?: unknown; choices?: unknown };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      return 'relay';
    }
    const usage = readOpenAiUsage(parsed.usage);
    if (usage !== undefined) this.ctx.usage = usage;
    const usageOnly = Array.isArray(parsed.choices) && parsed.choices.length === 0;
    return this.hideUsage && usage !== undefined && usageOnly ? 'drop' : 'relay';
  }
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** A `stream` that is present and not a boolean: relayed, it would bill a stream as nothing. */
export function streamFlagError(body: Record<string, unknown>): LlmuxError | undefined {
  const stream = body.stream;
  if (stream === undefined || stream === null || typeof stream === 'boolean') return undefined;
  return errors.invalidRequest('stream must be a boolean (true or false)', 'stream');
}

const routes: readonly ProtocolRoute[] = Object.freeze([
  { method: 'POST', path: '/v1/chat/completions', operation: 'generate' },
  { method: 'POST', path: '/v1/completions', operation: 'generate' },
  { method: 'POST', path: '/v1/embeddings', operation: 'embed' },
]);

/** OpenAI Chat Completions, Completions and Embeddings. */
export const OPENAI: WireProtocol = Object.freeze<WireProtocol>({
  name: 'openai',
  routes,
  forwardHeaders: ['openai-beta'],
  validate: (body) => streamFlagError(body),
  isStream: (body) => body.stream === true,
  outputCap: (body) => positiveInteger(body.max_completion_tokens ?? body.max_tokens),
  outputCount: (body) => positiveInteger(body.n) ?? 1,
  deferredUsage: () => false,
  estimatePrompt: (body) => estimatePrompt(body, openAiImageTokens),
  // Chat takes `max_completion_tokens` (every current model does); text completions `max_tokens`.
  capOutput: (body, tokens) =>
    body.messages !== undefined
      ? { ...body, max_completion_tokens: tokens }
      : { ...body, max_tokens: tokens },
  authenticate(headers, apiKey) {
    headers.authorization = `Bearer ${apiKey}`;
  },
  upstreamRequest(ctx, requestStreamUsage): UpstreamRequest {
    const body = ctx.body;
    if (body === undefined) return { body: undefined, hideUsage: false };
    if (ctx.stream && requestStreamUsage) {
      const streamOptions = body.stream_options;
      const asked =
        typeof streamOptions === 'object' &&
        streamOptions !== null &&
        (streamOptions as { include_usage?: unknown }).include_usage === true;
      if (!asked) {
        const withUsage = {
          ...body,
          stream_options: {
            ...(typeof streamOptions === 'object' ? streamOptions : {}),
            include_usage: true,
          },
        };
        return { body: JSON.stringify(withUsage), hideUsage: true };
      }
    }
    return { body: ctx.rawBody ?? JSON.stringify(body), hideUsage: false };
  },
  readUsage: (answer) => readOpenAiUsage(answer.usage),
  errorOf: (answer) => answer.error ?? undefined,
  streamReader: (ctx, hideUsage) => new OpenAiStreamReader(ctx, hideUsage),
  renderError: OPENAI_ERROR_SHAPE.renderError,
  errorFrame: OPENAI_ERROR_SHAPE.errorFrame,
});
