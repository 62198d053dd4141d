// The SSE events of a streamed Anthropic message, as the Messages API sends them: message_start,
// content_block_start, ping, a content_block_delta per chunk, content_block_stop, message_delta
// (stop reason, cumulative output tokens) and message_stop; no `[DONE]`.
import { chunkTextJson, type ResolvedBehaviour } from '../behaviour.js';
import type { SseScript } from '../sse-writer.js';
import { fragmentOf } from '../tool-call.js';
import type { MessagePlan } from './message-object.js';
import { messageUsage } from './message-object.js';

const ERROR_EVENT =
  'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"mock stream error"}}\n\n';

function event(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/** The events of one streamed message. */
export class MessageStream implements SseScript {
  constructor(
    private readonly plan: MessagePlan,
    private readonly behaviour: ResolvedBehaviour,
  ) {}

  head(): string {
    const { plan } = this;
    const message: Record<string, unknown> = {
      id: plan.id,
      type: 'message',
      role: 'assistant',
      model: plan.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
    };
    // Like the API, the start reports the input and cache tokens and a first output token.
    if (plan.tokens !== undefined)
      message.usage = messageUsage(plan.tokens, Math.min(1, plan.tokens.completionTokens));
    const call = plan.toolCall;
    const block =
      call === undefined
        ? { type: 'text', text: '' }
        : { type: 'tool_use', id: plan.toolUseId, name: call.name, input: {} };
    return (
      event('message_start', JSON.stringify({ type: 'message_start', message })) +
      event(
        'content_block_start',
        JSON.stringify({ type: 'content_block_start', index: 0, content_block: block }),
      ) +
      event('ping', '{"type": "ping"}')
    );
  }

  chunk(index: number): string {
    const call = this.plan.toolCall;
    const delta =
      call === undefined
        ? `{"type":"text_delta","text":${chunkTextJson(this.behaviour, index)}}`
        : `{"type":"input_json_delta","partial_json":${JSON.stringify(fragmentOf(call.argumentsJson, index, this.behaviour.chunks))}}`;
    return event('content_block_delta', `{"type":"content_block_delta","index":0,"delta":${delta}}`);
  }

  tail(): string {
    const { plan } = this;
    if (plan.stopReason === undefined) return ERROR_EVENT;
    const usage =
      plan.tokens === undefined ? '' : `,"usage":{"output_tokens":${plan.tokens.completionTokens}}`;
    let tail =
      event('content_block_stop', '{"type":"content_block_stop","index":0}') +
      event(
        'message_delta',
        `{"type":"message_delta","delta":{"stop_reason":"${plan.stopReason}","stop_sequence":null}${usage}}`,
      );
    if (!this.behaviour.omitDone) tail += event('message_stop', '{"type":"message_stop"}');
    return tail;
  }

  errorFrame(): string {
    return ERROR_EVENT;
  }
}
