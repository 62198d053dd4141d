// The public types of `llmux/testing`'s mock upstream: what a behaviour may script, what the mock
// records, and the handle a test holds. Everything here is re-exported from `lib/testing/index.ts`.
import type { IncomingHttpHeaders } from 'node:http';

/**
 * How a generation ends, in every protocol's own words:
 *
 * | value | Chat/Completions `finish_reason` | Responses | Anthropic `stop_reason` |
 * |---|---|---|---|
 * | `'stop'` | `stop` (`tool_calls` for a tool call) | `completed` | `end_turn` (`tool_use` for a tool call) |
 * | `'length'` | `length` | `incomplete`, reason `max_output_tokens` | `max_tokens` |
 * | `'content_filter'` | `content_filter` | `incomplete`, reason `content_filter` | `refusal` |
 * | `'failed'` | streamed: the error frame instead of the finish; JSON: a 500 error | `failed` with an `error` | streamed: an `error` event; JSON: a 500 error |
 */
export type MockFinishReason = 'stop' | 'length' | 'content_filter' | 'failed';

/**
 * Token counts a behaviour may set; each protocol reports them in its own fields (see the README).
 * All are non-negative integers and all are optional: an unset count keeps its deterministic default.
 */
export interface MockUsage {
  /**
   * Every input token, cached, cache-write and audio ones included (OpenAI's `prompt_tokens`/`input_tokens`).
   * Default: the words of the prompt text (at least 1) plus `cachedTokens`, `cacheWriteTokens` and
   * `audioPromptTokens`. Anthropic's `input_tokens` is this minus `cachedTokens` and `cacheWriteTokens`.
   */
  promptTokens?: number;
  /**
   * Every output token, reasoning and audio ones included (`completion_tokens`/`output_tokens`).
   * Default: the chunks sent (times `n` on Chat/Completions) plus `reasoningTokens` and `audioCompletionTokens`.
   */
  completionTokens?: number;
  /** Input tokens read from the prompt cache. Default 0. */
  cachedTokens?: number;
  /** Input tokens written to the prompt cache (Anthropic's cache creation). Default 0. */
  cacheWriteTokens?: number;
  /** Hidden reasoning tokens, part of the output tokens. Default 0. */
  reasoningTokens?: number;
  /** Audio input tokens, part of the prompt tokens (Chat/Completions only). Default 0. */
  audioPromptTokens?: number;
  /** Audio output tokens, part of the completion tokens (Chat/Completions only). Default 0. */
  audioCompletionTokens?: number;
}

/**
 * How the mock answers one POST request, on every protocol's routes. Every field is optional; an empty
 * object is the plain default answer. Fields marked "SSE" only apply to streamed answers (`"stream": true`).
 */
export interface MockBehaviour {
  /**
   * HTTP status, 200–599. Default 200. At 400 or above an error body in the route's protocol shape
   * (OpenAI's, or Anthropic's under `/v1/messages`) is sent unless `body` or `rawBody` is given.
   */
  status?: number;
  /** Any JSON value, serialised once and sent verbatim as an `application/json` response (`null` included). */
  body?: unknown;
  /** Exact response bytes (e.g. `''` or `'not json'`), sent as `application/json` unless `headers` says otherwise. */
  rawBody?: string;
  /** Extra response headers; they override the mock's own (`content-type` included). */
  headers?: Readonly<Record<string, string | number | string[]>>;
  /** Sets the `Retry-After` response header. */
  retryAfter?: string;
  /** Wait this long after the request body was read before answering (or resetting). Default 0. */
  delayBeforeHeadersMs?: number;
  /**
   * Number of content chunks (text deltas, or tool-call argument fragments); also the output tokens and
   * the number of words in the JSON content. Default 3. Like a real model, the request's own cap
   * (`max_completion_tokens`/`max_tokens`, Responses' `max_output_tokens`, Anthropic's `max_tokens`) caps it.
   */
  chunks?: number;
  /** SSE: wait this long before each content chunk. Default 0. */
  chunkDelayMs?: number;
  /** Destroy the socket (TCP reset) without answering. */
  resetBeforeHeaders?: boolean;
  /** SSE: close the socket after this many content chunks were flushed (values above `chunks` act as `chunks`). */
  resetAfterChunks?: number;
  /** SSE: after this many content chunks pause the stream for `stallMs` (values above `chunks` act as `chunks`). */
  stallAfterChunks?: number;
  /** SSE: length of the `stallAfterChunks` pause; omitted, the stream stays silent until the client leaves or `close()`. */
  stallMs?: number;
  /**
   * SSE: end the response cleanly without its terminal event: `data: [DONE]` on Chat/Completions,
   * `response.completed` (or `.incomplete`/`.failed`) on Responses, `message_stop` on Anthropic.
   */
  omitDone?: boolean;
  /** Never send `usage`, in JSON or SSE (not even `"usage":null`). */
  omitUsage?: boolean;
  /**
   * SSE: after this many content chunks send the protocol's error frame and end without the terminal
   * event: a `mock_stream_error` `data:` frame (Chat/Completions), an `error` event (Responses), an
   * `error` event with an `overloaded_error` (Anthropic).
   */
  errorFrameAfterChunks?: number;
  /** The word sent in every chunk (followed by a space) instead of `tok0`, `tok1`, …. */
  content?: string;
  /** Token counts to report instead of (or besides) the deterministic defaults; see {@link MockUsage}. */
  usage?: MockUsage;
  /**
   * `true` answers with a tool call even when the request offers no tool (then named `mock_tool`);
   * `false` answers with text even when it does. Default: a tool call when the request has function
   * tools and its `tool_choice` is not `"none"`.
   */
  toolCalls?: boolean;
  /** The arguments of a tool call, instead of the smallest object the tool's JSON schema accepts. */
  toolArguments?: Readonly<Record<string, unknown>>;
  /** How the generation ends; see {@link MockFinishReason}. Default `'stop'` (`'length'` on Responses and Anthropic when the request's cap cut the chunks). */
  finishReason?: MockFinishReason;
}

/** Computes the behaviour for one POST request from what it received (body already parsed). */
export type MockBehaviourFactory = (request: RecordedRequest) => MockBehaviour;

/** What the mock recorded about one request. Fields that change (`aborted`, `completed`, `settled`) are updated in place. */
export interface RecordedRequest {
  /** 1-based arrival counter (restarts at 1 after `reset()`). */
  readonly seq: number;
  /** HTTP method, upper case. */
  readonly method: string;
  /** Request target as received, query string included. */
  readonly path: string;
  /** Request headers as Node parsed them. */
  readonly headers: IncomingHttpHeaders;
  /** The request body as UTF-8 (`''` until read, and for a body over the size cap). */
  readonly rawBody: string;
  /** The body parsed as JSON, or `undefined` when empty or not JSON. */
  readonly body: unknown;
  /** `Date.now()` when the request arrived. */
  readonly receivedAt: number;
  /** True when the client closed its side before the mock finished the response. */
  readonly aborted: boolean;
  /** True when the response was written completely. */
  readonly completed: boolean;
  /** True once the exchange is over: completed, aborted, reset by a behaviour, or cut by `close()`. */
  readonly settled: boolean;
}

/** Events of a {@link MockUpstream}: `request` once the body is read, `settled` once the exchange is over. */
export type MockUpstreamEvent = 'request' | 'settled';

/** Options of {@link createMockUpstream}. */
export interface MockUpstreamOptions {
  /** Interface to listen on. Default `'127.0.0.1'`. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** How many recent requests `requests` keeps (older ones are dropped); 0 keeps none. Default 1000. */
  maxRecorded?: number;
  /** Largest request body read; above it the answer is 413. Default 50 MiB. */
  maxBodyBytes?: number;
  /** Idle keep-alive socket lifetime. Default 5000 ms. */
  keepAliveTimeoutMs?: number;
  /**
   * Pending connections the listening socket queues (as `server.listen`'s `backlog`); raise it
   * for load tests that open more than a few hundred connections a second. Default 511.
   */
  backlog?: number;
  /** How many Responses API responses the mock keeps for `GET /v1/responses/{id}` (the oldest go first). Default 1000. */
  maxStoredResponses?: number;
}

/** A running mock upstream; see {@link createMockUpstream}. */
export interface MockUpstream {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`; routes live under `/v1`. */
  readonly url: string;
  /** The port the mock listens on. */
  readonly port: number;
  /** A snapshot of the last `maxRecorded` requests, oldest first (a new array on every read). */
  readonly requests: readonly RecordedRequest[];
  /** Queues one-shot behaviours, consumed in order by arriving POST requests. Throws a `TypeError` for an invalid one. */
  enqueue(...behaviours: MockBehaviour[]): void;
  /** Sets the behaviour of POST requests that find the queue empty; `undefined` restores the plain default. */
  setBehaviour(behaviour: MockBehaviour | MockBehaviourFactory | undefined): void;
  /** Number of queued behaviours not consumed yet. */
  pendingBehaviours(): number;
  /** Clears the queue, the default behaviour, the records, the `seq` counter, the settled count and the stored responses. */
  reset(): void;
  /** Adds a listener for `request` or `settled`. */
  on(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this;
  /** Removes a listener added with {@link MockUpstream.on}. */
  off(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this;
  /**
   * Resolves once at least `count` requests have settled since creation (or the last `reset()`), with the recorded
   * requests that have settled; rejects after `timeoutMs` (default 5000) or when the mock is closed first.
   */
  waitForSettled(count: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  /** Sockets currently open to the mock, idle keep-alive ones included. */
  openConnections(): number;
  /** Ends every connection (idle and in flight), cancels pending timers and stops listening. Idempotent. */
  close(): Promise<void>;
}
