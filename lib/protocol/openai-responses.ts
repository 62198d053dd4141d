// The OpenAI Responses API: `POST /v1/responses` (JSON, or typed events ended by
// `response.completed`, `response.incomplete` or `response.failed`, no `[DONE]`), its usage in the
// response object, and the stored-response routes, which cost nothing.
import { estimatePrompt, openAiImageTokens } from '../accounting/estimate.js';
import type { RequestContext } from '../context.js';
import { OPENAI_ERROR_SHAPE, type LlmuxError } from '../errors/llmux-error.js';
import { readOpenAiUsage, streamFlagError } from './openai.js';
import type { ProtocolRoute, StreamReader, StreamVerdict, UpstreamRequest, WireProtocol } from './types.js';

/** The events that end a complete Responses stream; each carries the final response and its usage. */
const TERMINAL_EVENTS: ReadonlySet<string> = new Set([
  'response.completed',
  'response.incomplete',
  'response.failed',
]);

/** The event type of a Responses stream event: its `event:` line, else the `type` in its data. */
function eventTypeOf(data: string, event: string | undefined): string | undefined {
  if (event !== undefined) return event;
  const key = data.indexOf('"type"');
  if (key === -1) return undefined;
  const open = data.indexOf('"', data.indexOf(':', key) + 1);
  const close = open === -1 ? -1 : data.indexOf('"', open + 1);
  return close === -1 ? undefined : data.slice(open + 1, close);
}

/** Reads a Responses stream: usage from the terminal event, `error` events, completeness. */
class ResponsesStreamReader implements StreamReader {
  complete = false;

  constructor(private readonly ctx: RequestContext) {}

  read(data: string | undefined, event: string | undefined): StreamVerdict {
    if (data === undefined) return 'relay';
    const type = eventTypeOf(data, event);
    if (type === undefined) return 'relay';
    if (type.endsWith('.delta')) {
      this.ctx.streamedChunks++;
      return 'relay';
    }
    if (type === 'error') return { upstreamError: errorEventOf(data) };
    if (!TERMINAL_EVENTS.has(type)) return 'relay';
    this.complete = true;
    try {
      const usage = readOpenAiUsage((JSON.parse(data) as { response?: { usage?: unknown } }).response?.usage);
      if (usage !== undefined) this.ctx.usage = usage;
    } catch {
      // A terminal event that is not JSON still ends the stream; its usage is unknown.
    }
    return 'relay';
  }
}

/** The error of an `error` event (`{"type":"error","code","message","param"}`). */
function errorEventOf(data: string): unknown {
  try {
    const parsed = JSON.parse(data) as { error?: unknown };
    return parsed.error ?? parsed;
  } catch {
    return { message: 'upstream stream error' };
  }
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

const routes: readonly ProtocolRoute[] = Object.freeze([
  { method: 'POST', path: '/v1/responses', operation: 'generate' },
  { method: 'POST', path: '/v1/responses/input_tokens', operation: 'free' },
  { method: 'GET', path: '/v1/responses/{id}', operation: 'free' },
  { method: 'DELETE', path: '/v1/responses/{id}', operation: 'free' },
  { method: 'POST', path: '/v1/responses/{id}/cancel', operation: 'free' },
  { method: 'GET', path: '/v1/responses/{id}/input_items', operation: 'free' },
]);

/** The OpenAI Responses API. */
export const OPENAI_RESPONSES: WireProtocol = Object.freeze<WireProtocol>({
  name: 'openai-responses',
  routes,
  forwardHeaders: ['openai-beta'],
  validate: (body) => streamFlagError(body),
  isStream: (body) => body.stream === true,
  outputCap: (body) => positiveInteger(body.max_output_tokens),
  outputCount: () => 1,
  deferredUsage: (body) => body.background === true,
  estimatePrompt: (body) => estimatePrompt(body, openAiImageTokens),
  capOutput: (body, tokens) => ({ ...body, max_output_tokens: tokens }),
  authenticate(headers, apiKey) {
    headers.authorization = `Bearer ${apiKey}`;
  },
  // Usage always comes with the response: nothing to ask for, and `stream_options` is not a
  // field of this API, so the client's bytes go as they are.
  upstreamRequest(ctx): UpstreamRequest {
    const body = ctx.body;
    return { body: body === undefined ? undefined : (ctx.rawBody ?? JSON.stringify(body)), hideUsage: false };
  },
  readUsage: (answer) => readOpenAiUsage(answer.usage),
  // A response object's own `error` field is part of the resource (a failed background response
  // read later); only a plain `{"error": …}` body is the upstream refusing the request.
  errorOf: (answer) => (answer.object === 'response' ? undefined : (answer.error ?? undefined)),
  streamReader: (ctx) => new ResponsesStreamReader(ctx),
  renderError: OPENAI_ERROR_SHAPE.renderError,
  errorFrame: responsesErrorFrame,
});

/**
 * An `error` event as the Responses API streams it (`type`, `code`, `message`, `param`), with the
 * OpenAI `error` object beside it, which the `openai` SDK throws from.
 */
function responsesErrorFrame(err: LlmuxError): string {
  const body = err.toJSON();
  const data = { type: 'error', code: err.code, message: err.message, param: err.param, error: body.error };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}
