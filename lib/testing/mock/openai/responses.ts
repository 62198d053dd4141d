// OpenAI Responses API `POST /v1/responses`: reads the request (input, instructions, tools, cap),
// answers with a response object or its event stream, and stores it for the other routes.
import { capChunks, type ResolvedBehaviour } from '../behaviour.js';
import { countField, countWords, fieldOf, modelOf } from '../request-fields.js';
import type { RouteContext } from '../route.js';
import { countTokens } from '../tokens.js';
import { planToolCall, type OfferedTool, type ToolRequest } from '../tool-call.js';
import { inputItemsOf, responseObject, type ResponsePlan } from './response-object.js';
import { answerText, ResponsesStream } from './responses-stream.js';
import { responsesUsage } from './usage.js';

/** Words of every text the model reads: instructions, a string input, message texts and tool outputs. */
function inputWords(body: unknown): number {
  let words = 0;
  const instructions = fieldOf(body, 'instructions');
  if (typeof instructions === 'string') words += countWords(instructions);
  const input = fieldOf(body, 'input');
  if (typeof input === 'string') words += countWords(input);
  else if (Array.isArray(input)) {
    for (const item of input) {
      const content = fieldOf(item, 'content');
      if (typeof content === 'string') words += countWords(content);
      else if (Array.isArray(content)) {
        for (const part of content) {
          const text = fieldOf(part, 'text');
          if (typeof text === 'string') words += countWords(text);
        }
      }
      const output = fieldOf(item, 'output');
      if (typeof output === 'string') words += countWords(output);
    }
  }
  return Math.max(words, 1);
}

/** The function tools of a Responses request (hosted tools such as `web_search` are not called). */
function responsesTools(body: unknown): ToolRequest {
  const tools: OfferedTool[] = [];
  const offered = fieldOf(body, 'tools');
  if (Array.isArray(offered)) {
    for (const tool of offered) {
      const name = fieldOf(tool, 'name');
      if (fieldOf(tool, 'type') === 'function' && typeof name === 'string') {
        tools.push({ name, schema: fieldOf(tool, 'parameters') });
      }
    }
  }
  const choice = fieldOf(body, 'tool_choice');
  const forced = fieldOf(choice, 'type') === 'function' ? fieldOf(choice, 'name') : undefined;
  return {
    tools,
    suppressed: choice === 'none',
    forcedName: typeof forced === 'string' ? forced : undefined,
  };
}

function endOf(behaviour: ResolvedBehaviour): Pick<ResponsePlan, 'status' | 'incompleteReason'> {
  switch (behaviour.finishReason ?? (behaviour.truncated ? 'length' : 'stop')) {
    case 'length':
      return { status: 'incomplete', incompleteReason: 'max_output_tokens' };
    case 'content_filter':
      return { status: 'incomplete', incompleteReason: 'content_filter' };
    case 'failed':
      return { status: 'failed', incompleteReason: undefined };
    default:
      return { status: 'completed', incompleteReason: undefined };
  }
}

/** `POST /v1/responses`. */
export function createResponse(context: RouteContext): void {
  const body = context.record.body;
  const seq = context.record.seq;
  const behaviour = capChunks(context.behaviour, countField(body, 'max_output_tokens'));
  const toolCall = planToolCall(behaviour, responsesTools(body));
  const tokens = countTokens(behaviour.usage, inputWords(body), behaviour.chunks);
  const plan: ResponsePlan = {
    id: `resp_mock_${seq}`,
    createdAt: Math.floor(Date.now() / 1000),
    model: modelOf(body, 'mock-model'),
    request: body,
    itemId: toolCall === undefined ? `msg_mock_${seq}` : `fc_mock_${seq}`,
    callId: `call_mock_${seq}`,
    toolCall,
    text: toolCall === undefined ? answerText(behaviour) : '',
    ...endOf(behaviour),
    usage: behaviour.omitUsage ? undefined : responsesUsage(tokens),
    store: fieldOf(body, 'store') !== false,
  };
  const inputItems = inputItemsOf(body, seq);
  if (fieldOf(body, 'stream') === true) {
    context.stream(behaviour, new ResponsesStream(plan, behaviour, context.responses, inputItems));
    return;
  }
  const final = responseObject(plan, plan.status);
  if (plan.store) context.responses.save(plan.id, { response: final, inputItems });
  // A background response is answered as queued; retrieving it later finds it done.
  const answer = fieldOf(body, 'background') === true ? responseObject(plan, 'queued') : final;
  context.sendJson(behaviour.status, JSON.stringify(answer));
}
