// The objects of the OpenAI Responses API as the mock builds them: the `response` (with the request's
// settings echoed as the API does), its output item (a message or a function call) and its input items.
import { fieldOf } from '../request-fields.js';
import type { ToolCall } from '../tool-call.js';

/** The `status` of a response. */
export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled';

/** Everything a response says, decided before the first byte goes out. */
export interface ResponsePlan {
  readonly id: string;
  readonly createdAt: number;
  readonly model: string;
  /** The request body, for the settings the response echoes. */
  readonly request: unknown;
  /** The id of the one output item (`msg_…` or `fc_…`). */
  readonly itemId: string;
  readonly callId: string;
  readonly toolCall: ToolCall | undefined;
  /** The full text of a message answer. */
  readonly text: string;
  /** How the generation ends. */
  readonly status: 'completed' | 'incomplete' | 'failed';
  /** `incomplete_details.reason` when `status` is `incomplete`. */
  readonly incompleteReason: string | undefined;
  /** The usage object, or undefined under `omitUsage`. */
  readonly usage: Record<string, unknown> | undefined;
  /** False when the request said `store: false`: nothing is kept for retrieve. */
  readonly store: boolean;
}

const FAILED_ERROR = { code: 'server_error', message: 'mock response failed' };

function echo(request: unknown, name: string, fallback: unknown): unknown {
  const value = fieldOf(request, name);
  return value === undefined ? fallback : value;
}

/** The output item: `in_progress` with nothing generated yet, or `final` with all of it. */
export function outputItem(plan: ResponsePlan, final: boolean): Record<string, unknown> {
  const status = !final ? 'in_progress' : plan.status === 'completed' ? 'completed' : 'incomplete';
  const call = plan.toolCall;
  if (call !== undefined) {
    return {
      id: plan.itemId,
      type: 'function_call',
      status,
      arguments: final ? call.argumentsJson : '',
      call_id: plan.callId,
      name: call.name,
    };
  }
  return {
    id: plan.itemId,
    type: 'message',
    status,
    content: final ? [outputText(plan.text)] : [],
    role: 'assistant',
  };
}

/** An `output_text` content part. */
export function outputText(text: string): Record<string, unknown> {
  return { type: 'output_text', annotations: [], logprobs: [], text };
}

/**
 * The response object with `status`; `output` holds the final item unless the response has not
 * started (`queued`, `in_progress`). Usage is `null` until the end, and absent under `omitUsage`.
 */
export function responseObject(plan: ResponsePlan, status: ResponseStatus): Record<string, unknown> {
  const request = plan.request;
  const ended = status !== 'queued' && status !== 'in_progress';
  const response: Record<string, unknown> = {
    id: plan.id,
    object: 'response',
    created_at: plan.createdAt,
    status,
    background: echo(request, 'background', false),
    completed_at: status === 'completed' ? plan.createdAt : null,
    error: status === 'failed' ? FAILED_ERROR : null,
    incomplete_details:
      status === 'incomplete' && plan.incompleteReason !== undefined
        ? { reason: plan.incompleteReason }
        : null,
    instructions: echo(request, 'instructions', null),
    max_output_tokens: echo(request, 'max_output_tokens', null),
    model: plan.model,
    output: ended ? [outputItem(plan, true)] : [],
    parallel_tool_calls: echo(request, 'parallel_tool_calls', true),
    previous_response_id: echo(request, 'previous_response_id', null),
    reasoning: echo(request, 'reasoning', { effort: null, summary: null }),
    service_tier: 'default',
    store: plan.store,
    temperature: echo(request, 'temperature', 1),
    text: echo(request, 'text', { format: { type: 'text' } }),
    tool_choice: echo(request, 'tool_choice', 'auto'),
    tools: echo(request, 'tools', []),
    top_p: echo(request, 'top_p', 1),
    truncation: echo(request, 'truncation', 'disabled'),
    metadata: echo(request, 'metadata', {}),
  };
  if (plan.usage !== undefined) response.usage = ended ? plan.usage : null;
  return response;
}

/** The request's input as the items `GET /v1/responses/{id}/input_items` lists, each with an id. */
export function inputItemsOf(request: unknown, responseSeq: number): Record<string, unknown>[] {
  const input = fieldOf(request, 'input');
  const items: Record<string, unknown>[] = [];
  const idOf = (index: number) => `msg_mock_${responseSeq}_in_${index}`;
  if (typeof input === 'string') {
    items.push(message(idOf(0), 'user', input));
    return items;
  }
  if (!Array.isArray(input)) return items;
  input.forEach((item: unknown, index) => {
    if (typeof item !== 'object' || item === null) return;
    const source = item as Record<string, unknown>;
    const type = source.type ?? 'message';
    if (type === 'message' && typeof source.content === 'string') {
      items.push(message(idOf(index), String(source.role ?? 'user'), source.content));
      return;
    }
    items.push({ id: idOf(index), ...source, type, ...(type === 'message' ? { status: 'completed' } : {}) });
  });
  return items;
}

function message(id: string, role: string, text: string): Record<string, unknown> {
  const partType = role === 'assistant' ? 'output_text' : 'input_text';
  return { id, type: 'message', role, status: 'completed', content: [{ type: partType, text }] };
}
