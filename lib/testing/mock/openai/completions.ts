// OpenAI Chat Completions and legacy Completions: the JSON answer and the SSE stream of
// `chat.completion.chunk` / `text_completion` frames ending in `data: [DONE]`.
import { capChunks, chunkText, chunkTextJson, type ResolvedBehaviour } from '../behaviour.js';
import { countField, countWords, fieldOf, modelOf } from '../request-fields.js';
import type { RouteContext } from '../route.js';
import type { SseScript } from '../sse-writer.js';

type CompletionKind = 'chat' | 'text';

const STREAM_ERROR_FRAME =
  'data: {"error":{"message":"mock stream error","type":"server_error","code":"mock_stream_error"}}\n\n';
const DONE_FRAME = 'data: [DONE]\n\n';

interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

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

function usageOf(promptTokens: number, completionTokens: number): ChatUsage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** The frames of one streamed completion; the envelope of every chunk is serialised once. */
class CompletionStream implements SseScript {
  private readonly envelope: string;
  private readonly includeUsage: boolean;
  private readonly usageNull: string;

  constructor(
    private readonly kind: CompletionKind,
    private readonly behaviour: ResolvedBehaviour,
    private readonly usage: ChatUsage,
    id: string,
    created: number,
    model: string,
    body: unknown,
  ) {
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.envelope = `{"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(model)},"choices":[`;
    this.includeUsage =
      fieldOf(fieldOf(body, 'stream_options'), 'include_usage') === true && !behaviour.omitUsage;
    this.usageNull = this.includeUsage ? ',"usage":null' : '';
  }

  head(): string {
    return '';
  }

  chunk(index: number): string {
    const text = chunkTextJson(this.behaviour, index);
    if (this.kind === 'text') {
      return `data: ${this.envelope}{"text":${text},"index":0,"logprobs":null,"finish_reason":null}]${this.usageNull}}\n\n`;
    }
    const role = index === 0 ? '"role":"assistant",' : '';
    return `data: ${this.envelope}{"index":0,"delta":{${role}"content":${text}},"finish_reason":null}]${this.usageNull}}\n\n`;
  }

  tail(): string {
    let tail =
      this.kind === 'text'
        ? `data: ${this.envelope}{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]${this.usageNull}}\n\n`
        : `data: ${this.envelope}{"index":0,"delta":{},"finish_reason":"stop"}]${this.usageNull}}\n\n`;
    if (this.includeUsage) tail += `data: ${this.envelope}],"usage":${JSON.stringify(this.usage)}}\n\n`;
    if (!this.behaviour.omitDone) tail += DONE_FRAME;
    return tail;
  }

  errorFrame(): string {
    return STREAM_ERROR_FRAME;
  }
}

function answer(context: RouteContext, kind: CompletionKind): void {
  const body = context.record.body;
  // Like a real model, the mock stops at the request's own cap.
  const behaviour = capChunks(
    context.behaviour,
    countField(body, 'max_completion_tokens') ?? countField(body, 'max_tokens'),
  );
  const model = modelOf(body, 'mock-model');
  const created = Math.floor(Date.now() / 1000);
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-mock-${context.record.seq}`;
  const usage = usageOf(promptWords(body, kind), behaviour.chunks);
  if (fieldOf(body, 'stream') === true) {
    context.stream(behaviour, new CompletionStream(kind, behaviour, usage, id, created, model, body));
    return;
  }
  let content = '';
  for (let i = 0; i < behaviour.chunks; i++) content += chunkText(behaviour, i);
  const response: Record<string, unknown> =
    kind === 'chat'
      ? {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
        }
      : {
          id,
          object: 'text_completion',
          created,
          model,
          choices: [{ text: content, index: 0, logprobs: null, finish_reason: 'stop' }],
        };
  if (!behaviour.omitUsage) response.usage = usage;
  context.sendJson(behaviour.status, JSON.stringify(response));
}

/** `POST /v1/chat/completions`. */
export function chatCompletion(context: RouteContext): void {
  answer(context, 'chat');
}

/** `POST /v1/completions`. */
export function textCompletion(context: RouteContext): void {
  answer(context, 'text');
}
