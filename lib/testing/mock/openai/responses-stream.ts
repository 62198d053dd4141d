// The typed SSE events of a streamed Responses API answer, as OpenAI sends them: `event:` lines,
// `data:` JSON carrying `type` and `sequence_number`, a terminal `response.*` event and no `[DONE]`.
import { chunkText, chunkTextJson, type ResolvedBehaviour } from '../behaviour.js';
import type { ResponseStore } from '../response-store.js';
import type { SseScript } from '../sse-writer.js';
import { fragmentOf } from '../tool-call.js';
import { outputItem, outputText, responseObject, type ResponsePlan } from './response-object.js';

/** The events of one streamed response; the store follows it (in progress, then final or failed). */
export class ResponsesStream implements SseScript {
  private sequence = 0;
  private readonly itemRef: string;

  constructor(
    private readonly plan: ResponsePlan,
    private readonly behaviour: ResolvedBehaviour,
    private readonly store: ResponseStore,
    private readonly inputItems: readonly Record<string, unknown>[],
  ) {
    this.itemRef = `"item_id":${JSON.stringify(plan.itemId)},"output_index":0`;
  }

  head(): string {
    const { plan } = this;
    const started = responseObject(plan, 'in_progress');
    this.save(started);
    const startedJson = JSON.stringify(started);
    let head =
      this.event('response.created', `"response":${startedJson}`) +
      this.event('response.in_progress', `"response":${startedJson}`) +
      this.event(
        'response.output_item.added',
        `"output_index":0,"item":${JSON.stringify(outputItem(plan, false))}`,
      );
    if (plan.toolCall === undefined) {
      head += this.event(
        'response.content_part.added',
        `${this.itemRef},"content_index":0,"part":${JSON.stringify(outputText(''))}`,
      );
    }
    return head;
  }

  chunk(index: number): string {
    const call = this.plan.toolCall;
    if (call !== undefined) {
      const fragment = fragmentOf(call.argumentsJson, index, this.behaviour.chunks);
      return this.event(
        'response.function_call_arguments.delta',
        `${this.itemRef},"delta":${JSON.stringify(fragment)}`,
      );
    }
    return this.event(
      'response.output_text.delta',
      `${this.itemRef},"content_index":0,"delta":${chunkTextJson(this.behaviour, index)},"logprobs":[]`,
    );
  }

  tail(): string {
    const { plan } = this;
    let tail: string;
    const call = plan.toolCall;
    if (call !== undefined) {
      tail = this.event(
        'response.function_call_arguments.done',
        `${this.itemRef},"arguments":${JSON.stringify(call.argumentsJson)}`,
      );
    } else {
      const text = JSON.stringify(plan.text);
      tail =
        this.event(
          'response.output_text.done',
          `${this.itemRef},"content_index":0,"text":${text},"logprobs":[]`,
        ) +
        this.event(
          'response.content_part.done',
          `${this.itemRef},"content_index":0,"part":${JSON.stringify(outputText(plan.text))}`,
        );
    }
    tail += this.event(
      'response.output_item.done',
      `"output_index":0,"item":${JSON.stringify(outputItem(plan, true))}`,
    );
    const final = responseObject(plan, plan.status);
    this.save(final);
    if (!this.behaviour.omitDone)
      tail += this.event(`response.${plan.status}`, `"response":${JSON.stringify(final)}`);
    return tail;
  }

  errorFrame(): string {
    this.save(responseObject(this.plan, 'failed'));
    return this.event('error', '"code":"mock_stream_error","message":"mock stream error","param":null');
  }

  /** One event; `fields` are its JSON members after `type` and `sequence_number`. */
  private event(type: string, fields: string): string {
    return `event: ${type}\ndata: {"type":"${type}","sequence_number":${this.sequence++},${fields}}\n\n`;
  }

  private save(response: Record<string, unknown>): void {
    if (this.plan.store) this.store.save(this.plan.id, { response, inputItems: this.inputItems });
  }
}

/** The full text of a message answer of `behaviour.chunks` chunks. */
export function answerText(behaviour: ResolvedBehaviour): string {
  let text = '';
  for (let i = 0; i < behaviour.chunks; i++) text += chunkText(behaviour, i);
  return text;
}
