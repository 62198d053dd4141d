// The wire protocols as tables: routes, usage read from real JSON answers and recorded streams,
// errors read from upstreams and rendered for clients in each protocol's shape, the relay's key,
// the bytes sent upstream, and the output cap.
import { describe, expect, it } from '@jest/globals';
import { llmuxError, RequestContext, type LlmuxErrorCode } from '../lib/index.js';
import { ANTHROPIC_MESSAGES, DEFAULT_ANTHROPIC_VERSION } from '../lib/protocol/anthropic-messages.js';
import { BUILTIN_PROTOCOLS, BUILTIN_ROUTES, protocolOf } from '../lib/protocol/builtin.js';
import { OPENAI } from '../lib/protocol/openai.js';
import { OPENAI_RESPONSES } from '../lib/protocol/openai-responses.js';
import { pathOf, RouteTable } from '../lib/protocol/routes.js';
import type { ProtocolName, StreamVerdict, WireProtocol } from '../lib/protocol/types.js';
import type { Usage } from '../lib/usage.js';

const BY_NAME: Record<ProtocolName, WireProtocol> = {
  openai: OPENAI,
  'openai-responses': OPENAI_RESPONSES,
  'anthropic-messages': ANTHROPIC_MESSAGES,
};

/** A usage with every class, absent ones 0. */
function usage(promptTokens: number, completionTokens: number, classes: Partial<Usage> = {}): Usage {
  return {
    promptTokens,
    completionTokens,
    totalTokens: promptTokens + completionTokens,
    cachedTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    audioPromptTokens: 0,
    audioCompletionTokens: 0,
    ...classes,
  };
}

/** A context for `protocol` holding `body` (and its bytes, as bodyLimit leaves them). */
function contextOf(protocol: WireProtocol, body?: Record<string, unknown>): RequestContext {
  const ctx = new RequestContext('req-1', protocol);
  if (body !== undefined) {
    ctx.body = body;
    ctx.rawBody = Buffer.from(JSON.stringify(body));
    ctx.stream = body.stream === true;
  }
  return ctx;
}

describe('RouteTable.match', () => {
  it.each<[string, string, ProtocolName, string, string]>([
    ['POST', '/v1/chat/completions', 'openai', '/v1/chat/completions', 'generate'],
    ['POST', '/v1/completions', 'openai', '/v1/completions', 'generate'],
    ['POST', '/v1/embeddings', 'openai', '/v1/embeddings', 'embed'],
    ['POST', '/v1/responses', 'openai-responses', '/v1/responses', 'generate'],
    ['POST', '/v1/responses/input_tokens', 'openai-responses', '/v1/responses/input_tokens', 'free'],
    ['GET', '/v1/responses/resp_123', 'openai-responses', '/v1/responses/{id}', 'free'],
    ['DELETE', '/v1/responses/resp_123', 'openai-responses', '/v1/responses/{id}', 'free'],
    ['POST', '/v1/responses/resp_123/cancel', 'openai-responses', '/v1/responses/{id}/cancel', 'free'],
    [
      'GET',
      '/v1/responses/resp_123/input_items',
      'openai-responses',
      '/v1/responses/{id}/input_items',
      'free',
    ],
    ['POST', '/v1/messages', 'anthropic-messages', '/v1/messages', 'generate'],
    ['POST', '/v1/messages/count_tokens', 'anthropic-messages', '/v1/messages/count_tokens', 'free'],
  ])('matches %s %s to %s %s (%s)', (method, path, protocol, routePath, operation) => {
    const match = BUILTIN_ROUTES.match(method, path);
    expect(match?.protocol).toBe(BY_NAME[protocol]);
    expect(match?.route).toEqual({ method, path: routePath, operation });
  });

  it.each<[string | undefined, string, string]>([
    ['GET', '/v1/chat/completions', 'the wrong method'],
    ['PUT', '/v1/messages', 'a method no route has'],
    [undefined, '/v1/messages', 'no method'],
    ['POST', '/v1/chat/completions/', 'a trailing slash'],
    ['POST', '/v1/chat/completion', 'a typo'],
    ['POST', '/v1/chat/completions?stream=true', 'a query string (match takes a path)'],
    ['GET', '/v1/responses/', 'an empty id'],
    ['GET', '/v1/responses/a/b', 'a nested id'],
    ['POST', '/v1/responses/a/b/cancel', 'a nested id before a suffix'],
    ['POST', '/v1/responses/cancel', 'a suffix with no id'],
    ['POST', '/v1/responses/resp_1', 'an id route under the wrong method'],
    ['GET', '/v1/responses/resp_1/cancel', 'a suffix of another method'],
    ['POST', '/v2/messages', 'another version'],
  ])('matches nothing for %s %s (%s)', (method, path) => {
    expect(BUILTIN_ROUTES.match(method, path)).toBeUndefined();
  });

  it('matches only the routes of the protocols it was built with', () => {
    const table = new RouteTable([ANTHROPIC_MESSAGES]);
    expect(table.match('POST', '/v1/messages')?.protocol).toBe(ANTHROPIC_MESSAGES);
    expect(table.match('POST', '/v1/chat/completions')).toBeUndefined();
    expect(table.protocols).toEqual([ANTHROPIC_MESSAGES]);
  });

  it.each([
    ['/v1/responses/resp_9', '/v1/responses/{id}'],
    ['/v1/responses/resp_9/cancel', '/v1/responses/{id}/cancel'],
    ['/v1/embeddings', '/v1/embeddings'],
  ])('labels %s by its route %s, whatever the method', (path, label) => {
    expect(BUILTIN_ROUTES.routeOf(path)?.path).toBe(label);
  });

  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/v1/chat/completions?x=1&y=2', '/v1/chat/completions'],
    ['http://relay.example/v1/messages?beta=true', '/v1/messages'],
    ['https://relay.example:8443/v1/responses', '/v1/responses'],
    ['http://relay.example', ''],
    ['/', '/'],
  ])('reads the path of the target %s as %s', (url, path) => {
    expect(pathOf(url)).toBe(path);
  });

  it.each<[string, string, ProtocolName, boolean]>([
    ['POST', '/v1/messages', 'anthropic-messages', true],
    ['GET', '/v1/messages/batches', 'anthropic-messages', false],
    ['POST', 'http://relay.example/v1/responses', 'openai-responses', true],
    ['POST', '/v1/unknown', 'openai', false],
  ])('finds the protocol of %s %s: %s', (method, url, protocol, routed) => {
    const found = protocolOf(method, url);
    expect(found.protocol).toBe(BY_NAME[protocol]);
    expect(found.route !== undefined).toBe(routed);
  });

  it('has every built-in protocol once', () => {
    expect(BUILTIN_PROTOCOLS.map((p) => p.name)).toEqual([
      'openai',
      'openai-responses',
      'anthropic-messages',
    ]);
  });
});

describe('readUsage of JSON answers', () => {
  it.each<[string, WireProtocol, Record<string, unknown>, Usage | undefined]>([
    [
      'an OpenAI chat answer with cached, reasoning and audio tokens',
      OPENAI,
      {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: {
          prompt_tokens: 1_200,
          completion_tokens: 300,
          total_tokens: 1_500,
          prompt_tokens_details: { cached_tokens: 1_024, audio_tokens: 50 },
          completion_tokens_details: {
            reasoning_tokens: 200,
            audio_tokens: 40,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
          },
        },
      },
      usage(1_200, 300, {
        cachedTokens: 1_024,
        reasoningTokens: 200,
        audioPromptTokens: 50,
        audioCompletionTokens: 40,
      }),
    ],
    [
      'an OpenAI chat answer without details',
      OPENAI,
      { object: 'chat.completion', usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } },
      usage(9, 3),
    ],
    [
      'an OpenAI embeddings answer',
      OPENAI,
      { object: 'list', data: [], usage: { prompt_tokens: 8, total_tokens: 8 } },
      usage(8, 0),
    ],
    [
      'the total an OpenAI answer states',
      OPENAI,
      { usage: { prompt_tokens: 8, completion_tokens: 2, total_tokens: 11 } },
      { ...usage(8, 2), totalTokens: 11 },
    ],
    [
      'cached tokens above the prompt, clamped',
      OPENAI,
      { usage: { prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 99 } } },
      usage(10, 1, { cachedTokens: 10 }),
    ],
    ['an OpenAI answer without usage', OPENAI, { object: 'chat.completion', choices: [] }, undefined],
    ['an OpenAI answer whose usage is null', OPENAI, { usage: null }, undefined],
    [
      'an OpenAI usage of no count',
      OPENAI,
      { usage: { prompt_tokens: -1, completion_tokens: 'x' } },
      undefined,
    ],
    [
      'a Responses answer with input and output details',
      OPENAI_RESPONSES,
      {
        id: 'resp_1',
        object: 'response',
        status: 'completed',
        usage: {
          input_tokens: 2_000,
          input_tokens_details: { cached_tokens: 1_500 },
          output_tokens: 700,
          output_tokens_details: { reasoning_tokens: 512 },
          total_tokens: 2_700,
        },
      },
      usage(2_000, 700, { cachedTokens: 1_500, reasoningTokens: 512 }),
    ],
    [
      'a Responses answer without usage (background)',
      OPENAI_RESPONSES,
      { object: 'response', usage: null },
      undefined,
    ],
    [
      'an Anthropic message with cache reads and writes, in the prompt',
      ANTHROPIC_MESSAGES,
      {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        content: [{ type: 'text', text: 'hi' }],
        usage: {
          input_tokens: 10,
          cache_read_input_tokens: 100,
          cache_creation_input_tokens: 20,
          output_tokens: 5,
        },
      },
      usage(130, 5, { cachedTokens: 100, cacheWriteTokens: 20 }),
    ],
    [
      'an Anthropic message with one-hour cache writes among its writes',
      ANTHROPIC_MESSAGES,
      {
        type: 'message',
        usage: {
          input_tokens: 10,
          cache_creation_input_tokens: 20,
          cache_creation: { ephemeral_5m_input_tokens: 5, ephemeral_1h_input_tokens: 15 },
          output_tokens: 5,
        },
      },
      usage(30, 5, { cacheWriteTokens: 20, cacheWrite1hTokens: 15 }),
    ],
    [
      'an Anthropic message without cache fields',
      ANTHROPIC_MESSAGES,
      { type: 'message', usage: { input_tokens: 12, output_tokens: 4 } },
      usage(12, 4),
    ],
    [
      'an Anthropic message with only cache counts',
      ANTHROPIC_MESSAGES,
      { type: 'message', usage: { cache_read_input_tokens: 100 } },
      undefined,
    ],
    ['an Anthropic message without usage', ANTHROPIC_MESSAGES, { type: 'message' }, undefined],
  ])('reads %s', (_what, protocol, answer, expected) => {
    expect(protocol.readUsage(answer)).toEqual(expected);
  });
});

/** One recorded SSE event: its `event:` name (or none) and its data. */
type Recorded = readonly [event: string | undefined, data: string | undefined];

function replay(protocol: WireProtocol, events: readonly Recorded[], hideUsage = false) {
  const ctx = contextOf(protocol, { stream: true });
  const reader = protocol.streamReader(ctx, hideUsage);
  const verdicts: StreamVerdict[] = [];
  const completeAfter: boolean[] = [];
  for (const [event, data] of events) {
    verdicts.push(reader.read(data, event));
    completeAfter.push(reader.complete);
  }
  return { ctx, reader, verdicts, completeAfter };
}

const chunk = (content: string) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
    usage: null,
  });
const USAGE_CHUNK = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  choices: [],
  usage: {
    prompt_tokens: 5,
    completion_tokens: 2,
    total_tokens: 7,
    prompt_tokens_details: { cached_tokens: 2 },
    completion_tokens_details: { reasoning_tokens: 1 },
  },
});

describe('the OpenAI stream reader', () => {
  const stream: Recorded[] = [
    [undefined, chunk('')],
    [undefined, chunk('Hello')],
    [undefined, chunk(' world')],
    [undefined, USAGE_CHUNK],
    [undefined, '[DONE]'],
  ];

  it('reads the usage chunk and completes at [DONE]', () => {
    const { ctx, verdicts, completeAfter } = replay(OPENAI, stream);
    expect(verdicts).toEqual(['relay', 'relay', 'relay', 'relay', 'relay']);
    expect(completeAfter).toEqual([false, false, false, false, true]);
    expect(ctx.usage).toEqual(usage(5, 2, { cachedTokens: 2, reasoningTokens: 1 }));
    expect(ctx.streamedChunks).toBe(4);
  });

  it('drops the usage-only chunk it asked for on the client’s behalf', () => {
    const { ctx, verdicts } = replay(OPENAI, stream, true);
    expect(verdicts).toEqual(['relay', 'relay', 'relay', 'drop', 'relay']);
    expect(ctx.usage?.promptTokens).toBe(5);
  });

  it('relays a hidden usage that rides on a chunk with choices', () => {
    const withChoice = JSON.stringify({
      choices: [{ index: 0, delta: { content: '!' } }],
      usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    });
    const { ctx, verdicts } = replay(OPENAI, [[undefined, withChoice]], true);
    expect(verdicts).toEqual(['relay']);
    expect(ctx.usage).toEqual(usage(5, 3));
  });

  it('is not complete without [DONE]', () => {
    const { reader, ctx } = replay(OPENAI, stream.slice(0, 4));
    expect(reader.complete).toBe(false);
    expect(ctx.usage?.totalTokens).toBe(7);
  });

  it.each<[string, Recorded, unknown]>([
    [
      'an error event',
      ['error', JSON.stringify({ error: { message: 'boom', type: 'server_error', code: null } })],
      { message: 'boom', type: 'server_error', code: null },
    ],
    [
      'an error object in a data frame',
      [undefined, JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } })],
      { message: 'overloaded', type: 'server_error' },
    ],
    ['an error event that is not JSON', ['error', 'upstream exploded'], { message: 'upstream stream error' }],
    ['an error event without an error field', ['error', '{"message":"bad"}'], { message: 'bad' }],
  ])('fails on %s', (_what, event, upstreamError) => {
    const { verdicts, ctx } = replay(OPENAI, [event]);
    expect(verdicts).toEqual([{ upstreamError }]);
    expect(ctx.streamedChunks).toBe(0);
  });

  it('relays a chunk whose text is the word "error"', () => {
    const { verdicts } = replay(OPENAI, [
      [undefined, chunk('"error"')],
      [undefined, chunk('error')],
    ]);
    expect(verdicts).toEqual(['relay', 'relay']);
  });

  it('relays an event without data', () => {
    const { verdicts } = replay(OPENAI, [['ping', undefined]]);
    expect(verdicts).toEqual(['relay']);
  });
});

const responseEvent = (type: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type, ...extra });
const RESPONSE_USAGE = {
  input_tokens: 40,
  input_tokens_details: { cached_tokens: 32 },
  output_tokens: 12,
  output_tokens_details: { reasoning_tokens: 8 },
  total_tokens: 52,
};

describe('the Responses stream reader', () => {
  const events = (terminal: string, named: boolean): Recorded[] =>
    (
      [
        [
          'response.created',
          responseEvent('response.created', { response: { status: 'in_progress', usage: null } }),
        ],
        ['response.in_progress', responseEvent('response.in_progress', { response: { usage: null } })],
        [
          'response.output_item.added',
          responseEvent('response.output_item.added', { item: { type: 'message' } }),
        ],
        ['response.output_text.delta', responseEvent('response.output_text.delta', { delta: 'Hel' })],
        ['response.output_text.delta', responseEvent('response.output_text.delta', { delta: 'lo' })],
        ['response.output_text.done', responseEvent('response.output_text.done', { text: 'Hello' })],
        [terminal, responseEvent(terminal, { response: { status: 'x', usage: RESPONSE_USAGE } })],
      ] as const
    ).map(([event, data]) => [named ? event : undefined, data]);

  it.each([
    ['response.completed', true],
    ['response.incomplete', true],
    ['response.failed', true],
    ['response.completed', false],
  ])('ends only at %s (event lines: %s) and reads the usage there', (terminal, named) => {
    const { ctx, verdicts, completeAfter } = replay(OPENAI_RESPONSES, events(terminal, named));
    expect(verdicts.every((verdict) => verdict === 'relay')).toBe(true);
    expect(completeAfter).toEqual([false, false, false, false, false, false, true]);
    expect(ctx.usage).toEqual(usage(40, 12, { cachedTokens: 32, reasoningTokens: 8 }));
    expect(ctx.streamedChunks).toBe(2);
  });

  it('is not complete at a [DONE] it never sends', () => {
    const { reader, ctx } = replay(OPENAI_RESPONSES, [
      ...events('response.completed', true).slice(0, 6),
      [undefined, '[DONE]'],
    ]);
    expect(reader.complete).toBe(false);
    expect(ctx.usage).toBeUndefined();
  });

  it('completes at a terminal event that is not JSON, with no usage', () => {
    const { reader, ctx } = replay(OPENAI_RESPONSES, [['response.completed', '{oops']]);
    expect(reader.complete).toBe(true);
    expect(ctx.usage).toBeUndefined();
  });

  it.each<[string, Recorded, unknown]>([
    [
      'an error event',
      ['error', JSON.stringify({ type: 'error', code: 'server_error', message: 'boom', param: null })],
      { type: 'error', code: 'server_error', message: 'boom', param: null },
    ],
    [
      'an error event without its event line',
      [undefined, JSON.stringify({ type: 'error', code: 'rate_limit_exceeded', message: 'slow down' })],
      { type: 'error', code: 'rate_limit_exceeded', message: 'slow down' },
    ],
    [
      'an error event holding an error object',
      ['error', JSON.stringify({ type: 'error', error: { message: 'nested', code: 'x' } })],
      { message: 'nested', code: 'x' },
    ],
    ['an error event that is not JSON', ['error', 'nope'], { message: 'upstream stream error' }],
  ])('fails on %s', (_what, event, upstreamError) => {
    expect(replay(OPENAI_RESPONSES, [event]).verdicts).toEqual([{ upstreamError }]);
  });
});

describe('the Anthropic stream reader', () => {
  const recorded = (named: boolean, messageDelta: Record<string, unknown>): Recorded[] =>
    (
      [
        [
          'message_start',
          JSON.stringify({
            type: 'message_start',
            message: {
              id: 'msg_1',
              type: 'message',
              role: 'assistant',
              content: [],
              usage: {
                input_tokens: 10,
                cache_read_input_tokens: 100,
                cache_creation_input_tokens: 20,
                output_tokens: 1,
              },
            },
          }),
        ],
        [
          'content_block_start',
          '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        ],
        ['ping', '{"type":"ping"}'],
        [
          'content_block_delta',
          '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}',
        ],
        [
          'content_block_delta',
          '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}',
        ],
        ['content_block_stop', '{"type":"content_block_stop","index":0}'],
        [
          'message_delta',
          JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, ...messageDelta }),
        ],
        ['message_stop', '{"type":"message_stop"}'],
      ] as const
    ).map(([event, data]) => [named ? event : undefined, data]);

  it.each([true, false])(
    'merges usage from message_start and message_delta, complete at message_stop (event lines: %s)',
    (named) => {
      const { ctx, verdicts, completeAfter } = replay(
        ANTHROPIC_MESSAGES,
        recorded(named, { usage: { output_tokens: 15 } }),
      );
      expect(verdicts.every((verdict) => verdict === 'relay')).toBe(true);
      expect(completeAfter).toEqual([false, false, false, false, false, false, false, true]);
      expect(ctx.usage).toEqual(usage(130, 15, { cachedTokens: 100, cacheWriteTokens: 20 }));
      expect(ctx.streamedChunks).toBe(2);
    },
  );

  it('takes the counts a message_delta repeats (newer API versions) over those of message_start', () => {
    const { ctx } = replay(
      ANTHROPIC_MESSAGES,
      recorded(true, {
        usage: {
          input_tokens: 11,
          cache_read_input_tokens: 100,
          cache_creation_input_tokens: 20,
          output_tokens: 15,
        },
      }),
    );
    expect(ctx.usage).toEqual(usage(131, 15, { cachedTokens: 100, cacheWriteTokens: 20 }));
  });

  it('holds the input and cache counts from message_start while the output is unknown', () => {
    const { ctx, reader } = replay(ANTHROPIC_MESSAGES, recorded(true, {}).slice(0, 1));
    expect(ctx.usage).toEqual(usage(130, 1, { cachedTokens: 100, cacheWriteTokens: 20 }));
    expect(reader.complete).toBe(false);
  });

  it.each<[string, Recorded, unknown]>([
    [
      'an overloaded error event',
      ['error', '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'],
      { type: 'overloaded_error', message: 'Overloaded' },
    ],
    [
      'an error event without its event line',
      [undefined, '{"type":"error","error":{"type":"api_error","message":"Internal"}}'],
      { type: 'api_error', message: 'Internal' },
    ],
    ['an error event that is not JSON', ['error', 'nope'], { message: 'upstream stream error' }],
  ])('fails on %s', (_what, event, upstreamError) => {
    expect(replay(ANTHROPIC_MESSAGES, [event]).verdicts).toEqual([{ upstreamError }]);
  });
});

describe('errorOf', () => {
  it.each<[string, WireProtocol, Record<string, unknown>, unknown]>([
    [
      'an OpenAI error body',
      OPENAI,
      { error: { message: 'bad', type: 'invalid_request_error' } },
      { message: 'bad', type: 'invalid_request_error' },
    ],
    ['an OpenAI answer', OPENAI, { object: 'chat.completion', choices: [] }, undefined],
    ['an OpenAI body whose error is null', OPENAI, { error: null }, undefined],
    [
      'a Responses error body',
      OPENAI_RESPONSES,
      { error: { message: 'bad', code: 'x' } },
      { message: 'bad', code: 'x' },
    ],
    [
      'a failed response object (a resource, not a refusal)',
      OPENAI_RESPONSES,
      { object: 'response', status: 'failed', error: { code: 'server_error', message: 'x' } },
      undefined,
    ],
    [
      'an Anthropic error body',
      ANTHROPIC_MESSAGES,
      { type: 'error', error: { type: 'rate_limit_error', message: 'slow' } },
      { type: 'rate_limit_error', message: 'slow' },
    ],
    [
      'an Anthropic error body without its error',
      ANTHROPIC_MESSAGES,
      { type: 'error' },
      { message: 'upstream error' },
    ],
    [
      'an Anthropic message',
      ANTHROPIC_MESSAGES,
      { type: 'message', error: { message: 'not one' } },
      undefined,
    ],
  ])('reads %s', (_what, protocol, answer, error) => {
    expect(protocol.errorOf(answer)).toEqual(error);
  });
});

describe('renderError and errorFrame', () => {
  it.each<[LlmuxErrorCode, number]>([
    ['invalid_api_key', 401],
    ['insufficient_quota', 429],
    ['overloaded', 503],
    ['store_unavailable', 503],
  ])('renders %s for OpenAI clients as its status and {"error": …}', (code, status) => {
    const err = llmuxError(code);
    for (const protocol of [OPENAI, OPENAI_RESPONSES]) {
      const rendered = protocol.renderError(err);
      expect(rendered.status).toBe(status);
      expect(JSON.parse(rendered.body)).toEqual({
        error: { message: err.message, type: err.type, code, param: null },
      });
    }
  });

  it.each<[LlmuxErrorCode, number, string]>([
    ['invalid_request', 400, 'invalid_request_error'],
    ['invalid_api_key', 401, 'authentication_error'],
    ['model_not_allowed', 403, 'permission_error'],
    ['not_found', 404, 'not_found_error'],
    ['method_not_allowed', 405, 'invalid_request_error'],
    ['client_stalled', 408, 'timeout_error'],
    ['body_too_large', 413, 'request_too_large'],
    ['rate_limited', 429, 'rate_limit_error'],
    ['insufficient_quota', 429, 'rate_limit_error'],
    ['internal_error', 500, 'api_error'],
    ['upstream_unreachable', 502, 'api_error'],
    ['store_unavailable', 503, 'api_error'],
    ['upstream_timeout', 504, 'timeout_error'],
    ['overloaded', 529, 'overloaded_error'],
    ['upstream_overloaded', 529, 'overloaded_error'],
    ['queue_full', 529, 'overloaded_error'],
    ['gate_closed', 529, 'overloaded_error'],
  ])('renders %s for Anthropic clients as %d %s', (code, status, type) => {
    const err = llmuxError(code);
    const rendered = ANTHROPIC_MESSAGES.renderError(err);
    expect(rendered.status).toBe(status);
    expect(JSON.parse(rendered.body)).toEqual({ type: 'error', error: { type, message: err.message, code } });
  });

  it('frames an error for an OpenAI stream as an error event of the OpenAI body', () => {
    const err = llmuxError('upstream_stream_truncated');
    expect(OPENAI.errorFrame(err)).toBe(`event: error\ndata: ${JSON.stringify(err.toJSON())}\n\n`);
  });

  it('frames an error for a Responses stream with type, code, message and the error object', () => {
    const err = llmuxError('invalid_request', { message: 'bad field', param: 'input' });
    const frame = OPENAI_RESPONSES.errorFrame(err);
    expect(frame.startsWith('event: error\ndata: ')).toBe(true);
    expect(frame.endsWith('\n\n')).toBe(true);
    expect(JSON.parse(frame.slice('event: error\ndata: '.length))).toEqual({
      type: 'error',
      code: 'invalid_request',
      message: 'bad field',
      param: 'input',
      error: { message: 'bad field', type: 'invalid_request_error', code: 'invalid_request', param: 'input' },
    });
  });

  it('frames an overload for an Anthropic stream in Anthropic’s error shape', () => {
    const frame = ANTHROPIC_MESSAGES.errorFrame(llmuxError('upstream_overloaded'));
    expect(frame.startsWith('event: error\ndata: ')).toBe(true);
    expect(JSON.parse(frame.slice('event: error\ndata: '.length))).toEqual({
      type: 'error',
      error: {
        type: 'overloaded_error',
        message: llmuxError('upstream_overloaded').message,
        code: 'upstream_overloaded',
      },
    });
  });

  it('reads back its own frames as upstream errors', () => {
    for (const protocol of [OPENAI, OPENAI_RESPONSES, ANTHROPIC_MESSAGES]) {
      const frame = protocol.errorFrame(llmuxError('upstream_overloaded'));
      const data = frame.split('\n')[1]!.slice('data: '.length);
      const [verdict] = replay(protocol, [['error', data]]).verdicts;
      expect(verdict).toMatchObject({ upstreamError: { code: 'upstream_overloaded' } });
    }
  });
});

describe('authenticate', () => {
  it.each<[WireProtocol, Record<string, string>]>([
    [OPENAI, { authorization: 'Bearer sk-up' }],
    [OPENAI_RESPONSES, { authorization: 'Bearer sk-up' }],
    [ANTHROPIC_MESSAGES, { 'x-api-key': 'sk-up', 'anthropic-version': DEFAULT_ANTHROPIC_VERSION }],
  ])('sets the headers of %s', (protocol, expected) => {
    const headers: Record<string, string> = {};
    protocol.authenticate(headers, 'sk-up');
    expect(headers).toEqual(expected);
  });

  it('defaults anthropic-version to 2023-06-01 and forwards the client’s own', () => {
    expect(DEFAULT_ANTHROPIC_VERSION).toBe('2023-06-01');
    expect(ANTHROPIC_MESSAGES.forwardHeaders).toEqual(
      expect.arrayContaining(['anthropic-version', 'anthropic-beta']),
    );
  });
});

describe('upstreamRequest', () => {
  const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };

  it.each<[string, Record<string, unknown>, Record<string, unknown> | 'unchanged', boolean]>([
    [
      'a stream that did not ask for usage',
      { ...chat, stream: true },
      { ...chat, stream: true, stream_options: { include_usage: true } },
      true,
    ],
    [
      'a stream that said include_usage: false',
      { ...chat, stream: true, stream_options: { include_usage: false } },
      { ...chat, stream: true, stream_options: { include_usage: true } },
      true,
    ],
    [
      'a stream with other stream_options',
      { ...chat, stream: true, stream_options: { include_obfuscation: false } },
      { ...chat, stream: true, stream_options: { include_obfuscation: false, include_usage: true } },
      true,
    ],
    [
      'a stream whose stream_options is null',
      { ...chat, stream: true, stream_options: null },
      { ...chat, stream: true, stream_options: { include_usage: true } },
      true,
    ],
    [
      'a stream that asked for usage',
      { ...chat, stream: true, stream_options: { include_usage: true } },
      'unchanged',
      false,
    ],
    ['a JSON request', chat, 'unchanged', false],
  ])('sends OpenAI %s', (_what, body, sent, hideUsage) => {
    const ctx = contextOf(OPENAI, body);
    const request = OPENAI.upstreamRequest(ctx, true);
    expect(request.hideUsage).toBe(hideUsage);
    if (sent === 'unchanged') expect(request.body).toBe(ctx.rawBody);
    else expect(JSON.parse(String(request.body))).toEqual(sent);
  });

  it('sends an OpenAI stream as it is when the relay was told not to ask for usage', () => {
    const ctx = contextOf(OPENAI, { ...chat, stream: true });
    expect(OPENAI.upstreamRequest(ctx, false)).toEqual({ body: ctx.rawBody, hideUsage: false });
  });

  it.each([OPENAI, OPENAI_RESPONSES, ANTHROPIC_MESSAGES])(
    'sends no body for a request without one (%#)',
    (protocol) => {
      expect(protocol.upstreamRequest(contextOf(protocol), true)).toEqual({
        body: undefined,
        hideUsage: false,
      });
    },
  );

  it.each<[string, WireProtocol, Record<string, unknown>]>([
    ['a Responses stream', OPENAI_RESPONSES, { model: 'gpt-5', input: 'hi', stream: true }],
    ['a Responses request', OPENAI_RESPONSES, { model: 'gpt-5', input: 'hi' }],
    [
      'an Anthropic stream',
      ANTHROPIC_MESSAGES,
      { model: 'claude-sonnet-4-5', max_tokens: 10, messages: [], stream: true },
    ],
    [
      'an Anthropic request',
      ANTHROPIC_MESSAGES,
      { model: 'claude-sonnet-4-5', max_tokens: 10, messages: [] },
    ],
  ])('never changes the bytes of %s', (_what, protocol, body) => {
    const ctx = contextOf(protocol, body);
    expect(protocol.upstreamRequest(ctx, true)).toEqual({ body: ctx.rawBody, hideUsage: false });
    expect(protocol.upstreamRequest(ctx, true).body).toBe(ctx.rawBody);
  });

  it('sends the parsed body when the bytes were changed (a capped request)', () => {
    const ctx = contextOf(ANTHROPIC_MESSAGES, { model: 'claude', messages: [] });
    ctx.body = ANTHROPIC_MESSAGES.capOutput(ctx.body!, 64);
    ctx.rawBody = undefined;
    expect(JSON.parse(String(ANTHROPIC_MESSAGES.upstreamRequest(ctx, true).body))).toEqual({
      model: 'claude',
      messages: [],
      max_tokens: 64,
    });
  });
});

describe('capOutput and the output the request asks for', () => {
  it.each<[string, WireProtocol, Record<string, unknown>, Record<string, unknown>]>([
    [
      'an OpenAI chat in max_completion_tokens',
      OPENAI,
      { messages: [] },
      { messages: [], max_completion_tokens: 100 },
    ],
    ['an OpenAI completion in max_tokens', OPENAI, { prompt: 'hi' }, { prompt: 'hi', max_tokens: 100 }],
    [
      'a Responses request in max_output_tokens',
      OPENAI_RESPONSES,
      { input: 'hi' },
      { input: 'hi', max_output_tokens: 100 },
    ],
    [
      'an Anthropic request in max_tokens',
      ANTHROPIC_MESSAGES,
      { messages: [] },
      { messages: [], max_tokens: 100 },
    ],
  ])('caps %s', (_what, protocol, body, capped) => {
    const before = structuredClone(body);
    expect(protocol.capOutput(body, 100)).toEqual(capped);
    expect(body).toEqual(before);
  });

  it.each<[string, WireProtocol, Record<string, unknown>, number | undefined]>([
    ['max_completion_tokens over max_tokens', OPENAI, { max_completion_tokens: 50, max_tokens: 10 }, 50],
    ['max_tokens', OPENAI, { max_tokens: 10 }, 10],
    ['no cap', OPENAI, {}, undefined],
    ['a cap of 0 as none', OPENAI, { max_tokens: 0 }, undefined],
    ['a fractional cap as none', OPENAI, { max_tokens: 1.5 }, undefined],
    ['a string cap as none', OPENAI, { max_tokens: '10' }, undefined],
    ['max_output_tokens', OPENAI_RESPONSES, { max_output_tokens: 30, max_tokens: 99 }, 30],
    ['Anthropic max_tokens', ANTHROPIC_MESSAGES, { max_tokens: 1024 }, 1024],
  ])('reads the output cap: %s', (_what, protocol, body, cap) => {
    expect(protocol.outputCap(body)).toBe(cap);
  });

  it.each<[WireProtocol, Record<string, unknown>, number]>([
    [OPENAI, { n: 3 }, 3],
    [OPENAI, { n: 0 }, 1],
    [OPENAI, {}, 1],
    [OPENAI_RESPONSES, { n: 3 }, 1],
    [ANTHROPIC_MESSAGES, { n: 3 }, 1],
  ])('counts the outputs of %s %j as %d', (protocol, body, count) => {
    expect(protocol.outputCount(body)).toBe(count);
  });

  it.each<[WireProtocol, Record<string, unknown>, boolean]>([
    [OPENAI_RESPONSES, { background: true }, true],
    [OPENAI_RESPONSES, { background: false }, false],
    [OPENAI, { background: true }, false],
    [ANTHROPIC_MESSAGES, { background: true }, false],
  ])('defers the usage of %s %j: %s', (protocol, body, deferred) => {
    expect(protocol.deferredUsage(body)).toBe(deferred);
  });

  it.each([
    [true, undefined],
    [false, undefined],
    [null, undefined],
    ['true', 'invalid_request'],
    [1, 'invalid_request'],
  ])('checks stream %j on every protocol', (stream, code) => {
    for (const protocol of [OPENAI, OPENAI_RESPONSES, ANTHROPIC_MESSAGES]) {
      const err = protocol.validate({ stream }, undefined);
      expect(err?.code).toBe(code);
      if (err !== undefined) expect(err.param).toBe('stream');
    }
  });
});
