// The SSE frames of a streamed Chat Completion or legacy Completion, as OpenAI sends them: one chunk
// per choice and step, a finish chunk per choice, the usage chunk when asked, then `data: [DONE]`.
import { chunkTextJson, type ResolvedBehaviour } from '../behaviour.js';
import type { SseScript } from '../sse-writer.js';
import { fragmentOf, type ToolCall } from '../tool-call.js';

/** What the stream of one completion says, decided before the headers go out. */
export interface CompletionPlan {
  readonly kind: 'chat' | 'text';
  /** The request's `seq`, for the tool call ids. */
  readonly seq: number;
  readonly id: string;
  readonly created: number;
  readonly model: string;
  /** Number of choices (`n`). */
  readonly choices: number;
  readonly toolCall: ToolCall | undefined;
  /** The `finish_reason` of every choice, or undefined when the generation fails (the error frame ends it). */
  readonly finishReason: string | undefined;
  /** The usage object, or undefined when the stream sends none. */
  readonly usage: Record<string, unknown> | undefined;
}

const STREAM_ERROR_FRAME =
  'data: {"error":{"message":"mock stream error","type":"server_error","code":"mock_stream_error"}}\n\n';
const DONE_FRAME = 'data: [DONE]\n\n';

/** The frames of one streamed completion; the envelope every chunk shares is serialised once. */
export class CompletionStream implements SseScript {
  private readonly envelope: string;
  private readonly usageNull: string;

  constructor(
    private readonly plan: CompletionPlan,
    private readonly behaviour: ResolvedBehaviour,
  ) {
    const object = plan.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.envelope = `{"id":"${plan.id}","object":"${object}","created":${plan.created},"model":${JSON.stringify(plan.model)},"choices":[`;
    this.usageNull = plan.usage === undefined ? '' : ',"usage":null';
  }

  head(): string {
    const call = this.plan.toolCall;
    if (call === undefined) return '';
    let frames = '';
    for (let choice = 0; choice < this.plan.choices; choice++) {
      const start = `{"index":0,"id":"${toolCallId(this.plan.seq, choice)}","type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":""}}`;
      frames += this.frame(
        `{"index":${choice},"delta":{"role":"assistant","content":null,"tool_calls":[${start}]},"finish_reason":null}`,
      );
    }
    return frames;
  }

  chunk(index: number): string {
    const { plan } = this;
    let delta: string;
    if (plan.toolCall !== undefined) {
      const fragment = fragmentOf(plan.toolCall.argumentsJson, index, this.behaviour.chunks);
      delta = `"delta":{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(fragment)}}}]}`;
    } else if (plan.kind === 'chat') {
      const role = index === 0 ? '"role":"assistant",' : '';
      delta = `"delta":{${role}"content":${chunkTextJson(this.behaviour, index)}}`;
    } else {
      delta = `"text":${chunkTextJson(this.behaviour, index)}`;
    }
    let frames = '';
    for (let choice = 0; choice < plan.choices; choice++) {
      frames +=
        plan.kind === 'chat'
          ? this.frame(`{"index":${choice},${delta},"finish_reason":null}`)
          : this.frame(`{${delta},"index":${choice},"logprobs":null,"finish_reason":null}`);
    }
    return frames;
  }

  tail(): string {
    const { plan } = this;
    if (plan.finishReason === undefined) return STREAM_ERROR_FRAME;
    let tail = '';
    for (let choice = 0; choice < plan.choices; choice++) {
      tail +=
        plan.kind === 'chat'
          ? this.frame(`{"index":${choice},"delta":{},"finish_reason":"${plan.finishReason}"}`)
          : this.frame(
              `{"text":"","index":${choice},"logprobs":null,"finish_reason":"${plan.finishReason}"}`,
            );
    }
    if (plan.usage !== undefined)
      tail += `data: ${this.envelope}],"usage":${JSON.stringify(plan.usage)}}\n\n`;
    if (!this.behaviour.omitDone) tail += DONE_FRAME;
    return tail;
  }

  errorFrame(): string {
    return STREAM_ERROR_FRAME;
  }

  private frame(choice: string): string {
    return `data: ${this.envelope}${choice}]${this.usageNull}}\n\n`;
  }
}

/** The id of choice `choice`'s tool call in the answer to request `seq`. */
export function toolCallId(seq: number, choice: number): string {
  return `call_mock_${seq}_${choice}`;
}
