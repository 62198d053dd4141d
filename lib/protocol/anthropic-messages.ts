// Anthropic's Messages API: `POST /v1/messages` (JSON, or `message_start` … `message_stop`
// events), usage split over `message_start` (input and cache) and `message_delta` (output), the
// relay's key as `x-api-key`, and errors in Anthropic's `{"type":"error","error":{…}}` shape with
// the statuses its SDKs expect (529 for an overload).
import { anthropicImageTokens, estimatePrompt } from '../accounting/estimate.js';
import type { RequestContext } from '../context.js';
import type { LlmuxError } from '../errors/llmux-error.js';
import { tokenCount, usageOf, type Usage } from '../usage.js';
import { streamFlagError } from './openai.js';
import type { ProtocolRoute, StreamReader, StreamVerdict, UpstreamRequest, WireProtocol } from './types.js';

/** The API version sent upstream when the client named none. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** The usage counts of an Anthropic `usage` object, each undefined when absent. */
interface AnthropicCounts {
  input: number | undefined;
  output: number | undefined;
  cacheRead: number | undefined;
  cacheWrite: number | undefined;
  /** Of `cacheWrite`, the one-hour writes (`cache_creation.ephemeral_1h_input_tokens`). */
  cacheWrite1h: number | undefined;
}

function countsOf(value: unknown): AnthropicCounts | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const u = value as Record<string, unknown>;
  return {
    input: tokenCount(u.input_tokens),
    output: tokenCount(u.output_tokens),
    cacheRead: tokenCount(u.cache_read_input_tokens),
    cacheWrite: tokenCount(u.cache_creation_input_tokens),
    cacheWrite1h: oneHourWrites(u.cache_creation),
  };
}

function oneHourWrites(breakdown: unknown): number | undefined {
  if (typeof breakdown !== 'object' || breakdown === null) return undefined;
  return tokenCount((breakdown as Record<string, unknown>).ephemeral_1h_input_tokens);
}

/**
 * Anthropic's counts as llmux's usage: Anthropic's `input_tokens` leaves out the cached and
 * cache-write tokens, which llmux's `promptTokens` (like OpenAI's) includes.
 */
function usageFromCounts(counts: AnthropicCounts): Usage {
  const cacheRead = counts.cacheRead ?? 0;
  const cacheWrite = counts.cacheWrite ?? 0;
  return usageOf((counts.input ?? 0) + cacheRead + cacheWrite, counts.output ?? 0, {
    cachedTokens: cacheRead,
    cacheWriteTokens: cacheWrite,
    cacheWrite1hTokens: counts.cacheWrite1h ?? 0,
  });
}

/** Reads a Messages stream: usage from `message_start` and `message_delta`, `error` events, `message_stop`. */
class MessagesStreamReader implements StreamReader {
  complete = false;
  /** Merged as events come: `message_start` brings input and cache, `message_delta` the output so far. */
  private readonly counts: AnthropicCounts = {
    input: undefined,
    output: undefined,
    cacheRead: undefined,
    cacheWrite: undefined,
    cacheWrite1h: undefined,
  };

  constructor(private readonly ctx: RequestContext) {}

  read(data: string | undefined, event: string | undefined): StreamVerdict {
    if (data === undefined) return 'relay';
    switch (event ?? typeOf(data)) {
      case 'content_block_delta':
        this.ctx.streamedChunks++;
        return 'relay';
      case 'message_start':
        this.merge(parseField(data, 'message', 'usage'));
        // Its output count is a placeholder (often 1): the real one comes with message_delta.
        this.ctx.usagePartial = this.ctx.usage !== undefined;
        return 'relay';
      case 'message_delta':
        this.merge(parseField(data, 'usage'));
        this.ctx.usagePartial = false;
        return 'relay';
      case 'message_stop':
        this.complete = true;
        return 'relay';
      case 'error':
        return { upstreamError: parseField(data, 'error') ?? { message: 'upstream stream error' } };
      default:
        return 'relay';
    }
  }

  private merge(value: unknown): void {
    const counts = countsOf(value);
    if (counts === undefined) return;
    const mine = this.counts;
    mine.input = counts.input ?? mine.input;
    mine.output = counts.output ?? mine.output;
    mine.cacheRead = counts.cacheRead ?? mine.cacheRead;
    mine.cacheWrite = counts.cacheWrite ?? mine.cacheWrite;
    mine.cacheWrite1h = counts.cacheWrite1h ?? mine.cacheWrite1h;
    this.ctx.usage = usageFromCounts(mine);
  }
}

/** `data`'s `type` field, for streams sent without `event:` lines. */
function typeOf(data: string): string | undefined {
  return parseField(data, 'type') as string | undefined;
}

/** A nested field of a JSON event, or undefined when it is not JSON or has none. */
function parseField(data: string, ...path: string[]): unknown {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return undefined;
  }
  for (const name of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[name];
  }
  return value;
}

/**
 * Anthropic's error type for a status, as its SDKs map them to error classes: the one table of
 * llmux's Anthropic errors and of the mock upstream's.
 */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 408:
    case 504:
      return 'timeout_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 400 && status < 500 ? 'invalid_request_error' : 'api_error';
  }
}

/**
 * `err` as Anthropic answers: an overload (llmux's `overloaded_error` type: a full gate, no
 * upstream free) is the 529 Anthropic's SDKs retry; llmux's stable `code` rides along.
 */
function anthropicError(err: LlmuxError): { status: number; error: Record<string, unknown> } {
  const status = err.type === 'overloaded_error' ? 529 : err.status;
  return { status, error: { type: anthropicErrorType(status), message: err.message, code: err.code } };
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

const routes: readonly ProtocolRoute[] = Object.freeze([
  { method: 'POST', path: '/v1/messages', operation: 'generate' },
  { method: 'POST', path: '/v1/messages/count_tokens', operation: 'free' },
]);

/** Anthropic's Messages API. */
export const ANTHROPIC_MESSAGES: WireProtocol = Object.freeze<WireProtocol>({
  name: 'anthropic-messages',
  routes,
  forwardHeaders: ['anthropic-version', 'anthropic-beta'],
  validate: (body) => streamFlagError(body),
  isStream: (body) => body.stream === true,
  outputCap: (body) => positiveInteger(body.max_tokens),
  outputCount: () => 1,
  deferredUsage: () => false,
  estimatePrompt: (body) => estimatePrompt(body, anthropicImageTokens),
  capOutput: (body, tokens) => ({ ...body, max_tokens: tokens }),
  authenticate(headers, apiKey) {
    headers['x-api-key'] = apiKey;
    // The client's own `anthropic-version` (forwarded after this) wins over the default.
    headers['anthropic-version'] = DEFAULT_ANTHROPIC_VERSION;
  },
  // Usage always comes with the message: the client's bytes go as they are.
  upstreamRequest(ctx): UpstreamRequest {
    const body = ctx.body;
    return { body: body === undefined ? undefined : (ctx.rawBody ?? JSON.stringify(body)), hideUsage: false };
  },
  readUsage(answer) {
    const counts = countsOf(answer.usage);
    return counts === undefined || (counts.input === undefined && counts.output === undefined)
      ? undefined
      : usageFromCounts(counts);
  },
  errorOf: (answer) =>
    answer.type === 'error' ? (answer.error ?? { message: 'upstream error' }) : undefined,
  streamReader: (ctx) => new MessagesStreamReader(ctx),
  renderError(err) {
    const { status, error } = anthropicError(err);
    return { status, body: JSON.stringify({ type: 'error', error }) };
  },
  errorFrame(err) {
    const { error } = anthropicError(err);
    return `event: error\ndata: ${JSON.stringify({ type: 'error', error })}\n\n`;
  },
});
