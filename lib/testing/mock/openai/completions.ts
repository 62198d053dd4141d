// OpenAI Chat Completions and legacy Completions: reads the request (cap, `n`, tools), then answers
// in JSON or as a stream (see completion-stream.ts).
import { capChunks, chunkText, type ResolvedBehaviour } from '../behaviour.js';
import { countField, countWords, fieldOf, modelOf } from '../request-fields.js';
import type { RouteContext } from '../route.js';
import { countTokens } from '../tokens.js';
import { planToolCall, type OfferedTool, type ToolCall, type ToolRequest } from '../tool-call.js';
import { CompletionStream, toolCallId, type CompletionPlan } from './completion-stream.js';
import { openAiErrorBody } from './errors.js';
import { chatUsage } from './usage.js';

type CompletionKind = 'chat' | 'text';

const MAX_CHOICES = 128;

/** Prompt words of the string message contents (chat) or prompt strings (text), at least 1. */
function promptWords(body: unknown, kind: CompletionKind): number {
  let words = 0;
  if (kind === 'chat') {
    const messages = fieldOf(body, 'messages');
    if (Array.isArray(messages)) {
      for (const message of messages) {
        const content = fieldOf(message, 'content');
        if (typeof content === 'string') words += countWords(content);
      }
    }
  } else {
    const prompt = fieldOf(body, 'prompt');
    if (typeof prompt === 'string') words = countWords(prompt);
    else if (Array.isArray(prompt)) {
      for (const part of prompt) if (typeof part === 'string') words += countWords(part);
    }
  }
  return Math.max(words, 1);
}

/** The function tools of a Chat Completions request and what its `tool_choice` says. */
function chatTools(body: unknown): ToolRequest {
  const tools: OfferedTool[] = [];
  const offered = fieldOf(body, 'tools');
  if (Array.isArray(offered)) {
    for (const tool of offered) {
      const fn = fieldOf(tool, 'function');
      const name = fieldOf(fn, 'name');
      const type = fieldOf(tool, 'type');
      if ((type === undefined || type === 'function') && typeof name === 'string') {
        tools.push({ name, schema: fieldOf(fn, 'parameters') });
      }
    }
  }
  const choice = fieldOf(body, 'tool_choice');
  const forced = fieldOf(fieldOf(choice, 'function'), 'name');
  return {
    tools,
    suppressed: choice === 'none',
    forcedName: typeof forced === 'string' ? forced : undefined,
  };
}

function choiceCount(body: unknown): number {
  const n = countField(body, 'n');
  return n !== undefined && n >= 1 && n <= MAX_CHOICES ? n : 1;
}

function finishReasonOf(behaviour: ResolvedBehaviour, toolCall: ToolCall | undefined): string | undefined {
  switch (behaviour.finishReason) {
    case 'failed':
      return undefined;
    case 'length':
    case 'content_filter':
      return behaviour.finishReason;
    default:
      return toolCall === undefined ? 'stop' : 'tool_calls';
  }
}

function answer(context: RouteContext, kind: CompletionKind): void {
  const body = context.record.body;
  // Like a real model, the mock stops at the request's own cap.
  const behaviour = capChunks(
    context.behaviour,
    countField(body, 'max_completion_tokens') ?? countField(body, 'max_tokens'),
  );
  const choices = choiceCount(body);
  const toolCall = kind === 'chat' ? planToolCall(behaviour, chatTools(body)) : undefined;
  const tokens = countTokens(behaviour.usage, promptWords(body, kind), behaviour.chunks * choices);
  const streamed = fieldOf(body, 'stream') === true;
  const wantsUsage = streamed ? fieldOf(fieldOf(body, 'stream_options'), 'include_usage') === true : true;
  const plan: CompletionPlan = {
    kind,
    seq: context.record.seq,
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-mock-${context.record.seq}`,
    created: Math.floor(Date.now() / 1000),
    model: modelOf(body, 'mock-model'),
    choices,
    toolCall,
    finishReason: finishReasonOf(behaviour, toolCall),
    usage: wantsUsage && !behaviour.omitUsage ? chatUsage(tokens) : undefined,
  };
  if (streamed) context.stream(behaviour, new CompletionStream(plan, behaviour));
  else if (plan.finishReason === undefined) {
    context.sendJson(500, openAiErrorBody(500, 'mock generation failed'));
  } else context.sendJson(behaviour.status, completionJson(plan, behaviour));
}

function completionJson(plan: CompletionPlan, behaviour: ResolvedBehaviour): string {
  let content = '';
  for (let i = 0; i < behaviour.chunks; i++) content += chunkText(behaviour, i);
  const choices: Record<string, unknown>[] = [];
  for (let index = 0; index < plan.choices; index++) {
    if (plan.kind === 'text') {
      choices.push({ text: content, index, logprobs: null, finish_reason: plan.finishReason });
      continue;
    }
    const call = plan.toolCall;
    const message =
      call === undefined
        ? { role: 'assistant', content }
        : {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: toolCallId(plan.seq, index),
                type: 'function',
                function: { name: call.name, arguments: call.argumentsJson },
              },
            ],
          };
    choices.push({ index, message, finish_reason: plan.finishReason });
  }
  const response: Record<string, unknown> = {
    id: plan.id,
    object: plan.kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: plan.created,
    model: plan.model,
    choices,
  };
  if (plan.usage !== undefined) response.usage = plan.usage;
  return JSON.stringify(response);
}

/** `POST /v1/chat/completions`. */
export function chatCompletion(context: RouteContext): void {
  answer(context, 'chat');
}

/** `POST /v1/completions`. */
export function textCompletion(context: RouteContext): void {
  answer(context, 'text');
}
