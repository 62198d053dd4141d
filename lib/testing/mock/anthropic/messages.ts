// Anthropic Messages `POST /v1/messages` and `POST /v1/messages/count_tokens`: reads the request
// (system, messages, tools, the required `max_tokens`), then answers in JSON or as an event stream.
import { capChunks, chunkText, type ResolvedBehaviour } from '../behaviour.js';
import { countField, countWords, fieldOf, modelOf } from '../request-fields.js';
import type { RouteContext } from '../route.js';
import { countTokens } from '../tokens.js';
import { planToolCall, type OfferedTool, type ToolCall, type ToolRequest } from '../tool-call.js';
import { anthropicErrorBody } from './errors.js';
import { messageObject, type MessagePlan } from './message-object.js';
import { MessageStream } from './message-stream.js';

/** Words of a `system` or message `content`: a string, or blocks with `text` (tool results' `content` too). */
function contentWords(content: unknown, depth = 0): number {
  if (typeof content === 'string') return countWords(content);
  if (!Array.isArray(content) || depth > 2) return 0;
  let words = 0;
  for (const block of content) {
    const text = fieldOf(block, 'text');
    if (typeof text === 'string') words += countWords(text);
    words += contentWords(fieldOf(block, 'content'), depth + 1);
  }
  return words;
}

/** Words of the system prompt and every message, at least 1. */
function promptWords(body: unknown): number {
  let words = contentWords(fieldOf(body, 'system'));
  const messages = fieldOf(body, 'messages');
  if (Array.isArray(messages))
    for (const message of messages) words += contentWords(fieldOf(message, 'content'));
  return Math.max(words, 1);
}

/** The client tools of a Messages request (server tools such as `web_search_…` are not called). */
function messageTools(body: unknown): ToolRequest {
  const tools: OfferedTool[] = [];
  const offered = fieldOf(body, 'tools');
  if (Array.isArray(offered)) {
    for (const tool of offered) {
      const name = fieldOf(tool, 'name');
      const type = fieldOf(tool, 'type');
      if ((type === undefined || type === 'custom') && typeof name === 'string') {
        tools.push({ name, schema: fieldOf(tool, 'input_schema') });
      }
    }
  }
  const choice = fieldOf(body, 'tool_choice');
  const choiceType = fieldOf(choice, 'type');
  const forced = choiceType === 'tool' ? fieldOf(choice, 'name') : undefined;
  return {
    tools,
    suppressed: choiceType === 'none',
    forcedName: typeof forced === 'string' ? forced : undefined,
  };
}

function stopReasonOf(behaviour: ResolvedBehaviour, toolCall: ToolCall | undefined): string | undefined {
  switch (behaviour.finishReason ?? (behaviour.truncated ? 'length' : 'stop')) {
    case 'length':
      return 'max_tokens';
    case 'content_filter':
      return 'refusal';
    case 'failed':
      return undefined;
    default:
      return toolCall === undefined ? 'end_turn' : 'tool_use';
  }
}

/** `POST /v1/messages`. */
export function createMessage(context: RouteContext): void {
  const body = context.record.body;
  const maxTokens = countField(body, 'max_tokens');
  if (maxTokens === undefined) {
    const message =
      fieldOf(body, 'max_tokens') === undefined
        ? 'max_tokens: Field required'
        : 'max_tokens: Input should be a valid integer';
    context.sendJson(400, anthropicErrorBody(400, message));
    return;
  }
  const seq = context.record.seq;
  const behaviour = capChunks(context.behaviour, maxTokens);
  const toolCall = planToolCall(behaviour, messageTools(body));
  let text = '';
  if (toolCall === undefined) for (let i = 0; i < behaviour.chunks; i++) text += chunkText(behaviour, i);
  const plan: MessagePlan = {
    id: `msg_mock_${seq}`,
    model: modelOf(body, 'mock-model'),
    toolUseId: `toolu_mock_${seq}`,
    toolCall,
    text,
    stopReason: stopReasonOf(behaviour, toolCall),
    tokens: behaviour.omitUsage
      ? undefined
      : countTokens(behaviour.usage, promptWords(body), behaviour.chunks),
  };
  if (fieldOf(body, 'stream') === true) context.stream(behaviour, new MessageStream(plan, behaviour));
  else if (plan.stopReason === undefined)
    context.sendJson(500, anthropicErrorBody(500, 'mock generation failed'));
  else context.sendJson(behaviour.status, JSON.stringify(messageObject(plan)));
}

/** `POST /v1/messages/count_tokens`: `{ input_tokens }`, the prompt tokens a message would report in total. */
export function countMessageTokens(context: RouteContext): void {
  const tokens = countTokens(context.behaviour.usage, promptWords(context.record.body), 0);
  context.sendJson(context.behaviour.status, JSON.stringify({ input_tokens: tokens.promptTokens }));
}
