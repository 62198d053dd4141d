// The one list of the error codes llmux sends: each code's status, OpenAI `type`, default
// message and whether a client should retry it. Every error llmux raises is made from here.

/** OpenAI-compatible error `type` values used by llmux. */
export type LlmuxErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'server_error'
  | 'upstream_error'
  | 'timeout_error'
  | 'overloaded_error';

/** One entry of {@link ERROR_CATALOG}. */
export interface ErrorSpec {
  /** HTTP status sent to the client. */
  readonly status: number;
  /** True when the code may also be sent with any other 4xx status (a client error another body parser saw). */
  readonly anyClientStatus?: true;
  /** OpenAI error `type`. */
  readonly type: LlmuxErrorType;
  /** The message when the raiser gives none. */
  readonly message: string;
  /**
   * Whether the same request may succeed if retried soon. A 408/409/429/5xx error that cannot is
   * sent with `x-should-retry: false`, so OpenAI SDKs do not sleep on it.
   */
  readonly retryable: boolean;
  /** When it is sent, as the README's error table says. */
  readonly when: string;
  /** False for a code that is only recorded, never sent (the client had left). */
  readonly sent?: false;
}

/**
 * Every error code llmux sends or records, with its status and type. The README's error table is
 * checked against it by the test suite; metrics label exactly these codes.
 */
export const ERROR_CATALOG = Object.freeze({
  invalid_json: {
    status: 400,
    type: 'invalid_request_error',
    message: 'request body is not valid JSON',
    retryable: false,
    when: 'the body is not valid JSON, or nests deeper than `maxDepth`',
  },
  invalid_request: {
    status: 400,
    anyClientStatus: true,
    type: 'invalid_request_error',
    message: 'the request could not be read',
    retryable: false,
    when: 'the body is not a JSON object, `stream` is not a boolean (`param: "stream"`), or another client mistake',
  },
  invalid_encoding: {
    status: 400,
    type: 'invalid_request_error',
    message: 'request body could not be decompressed',
    retryable: false,
    when: 'a compressed body could not be decompressed',
  },
  invalid_api_key: {
    status: 401,
    type: 'authentication_error',
    message: 'Invalid API key provided.',
    retryable: false,
    when: 'missing, malformed, unknown, revoked or expired key; management API: no or a malformed `Authorization`',
  },
  model_not_priced: {
    status: 400,
    type: 'invalid_request_error',
    message: 'the model has no price',
    retryable: false,
    when: 'the model has no price (catalog or host table) and `onUnpricedModel` is `refuse`, the default (`param: "model"`)',
  },
  model_not_found: {
    status: 404,
    type: 'invalid_request_error',
    message: 'the model is not served here',
    retryable: false,
    when: 'a model router has no group for the model the request names (`param: "model"`)',
  },
  model_not_allowed: {
    status: 403,
    type: 'permission_error',
    message: 'the model is not allowed for this key',
    retryable: false,
    when: "the model is outside the key's, team's or user's allow-list (`param: \"model\"`)",
  },
  admin_required: {
    status: 403,
    type: 'permission_error',
    message: 'this route needs the admin key',
    retryable: false,
    when: 'management API called with a key that is not the admin key',
  },
  not_found: {
    status: 404,
    type: 'invalid_request_error',
    message: 'not found',
    retryable: false,
    when: 'unknown `/v1` route; management API: unknown route or record',
  },
  method_not_allowed: {
    status: 405,
    type: 'invalid_request_error',
    message: 'method not allowed',
    retryable: false,
    when: 'management API: method not served on that route (`Allow` lists the right ones)',
  },
  duplicate_id: {
    status: 409,
    type: 'invalid_request_error',
    message: 'a record with this id already exists',
    retryable: false,
    when: 'management API: a record with that `id` exists',
  },
  duplicate_hash: {
    status: 409,
    type: 'invalid_request_error',
    message: 'a key with this hash already exists',
    retryable: false,
    when: 'management API: a key with that hash exists',
  },
  in_use: {
    status: 409,
    type: 'invalid_request_error',
    message: 'the record is still referenced',
    retryable: false,
    when: 'management API: deleting a team or user that keys or users still reference',
  },
  length_required: {
    status: 411,
    type: 'invalid_request_error',
    message: 'a Content-Length header is required for this route',
    retryable: false,
    when: 'upload route without `Content-Length`',
  },
  body_too_large: {
    status: 413,
    type: 'invalid_request_error',
    message: 'request body exceeds the limit',
    retryable: false,
    when: 'body above `maxBytes`',
  },
  request_too_large: {
    status: 413,
    type: 'invalid_request_error',
    message: 'the request is larger than the upstream accepts',
    retryable: false,
    when: "the upstream refused the request as too large for its limits (OpenAI's 429 \"Request too large\", Anthropic's 413): the request's fault, so no upstream is cooled and no other is tried",
  },
  context_length_exceeded: {
    status: 400,
    type: 'invalid_request_error',
    message: "the prompt is longer than the model's context window",
    retryable: false,
    when: "the upstream said the prompt does not fit the model's context (a group's `fallbacks` may serve it with a larger model)",
  },
  unsupported_media_type: {
    status: 415,
    type: 'invalid_request_error',
    message: 'content type is not supported; send application/json',
    retryable: false,
    when: 'not `application/json` on a JSON route',
  },
  unsupported_encoding: {
    status: 415,
    type: 'invalid_request_error',
    message: 'content encoding is not supported',
    retryable: false,
    when: 'unknown `Content-Encoding`, or compression refused',
  },
  rate_limited: {
    status: 429,
    type: 'rate_limit_error',
    message: 'rate limit reached',
    retryable: true,
    when: "the upstream rate-limited the relay (its `Retry-After` is passed on), or the key's, team's or user's `rpm` / `tpm` is reached (with `RateLimit-*`; a request above a whole limit gets `x-should-retry: false` and no `Retry-After`)",
  },
  upstream_insufficient_quota: {
    status: 429,
    type: 'rate_limit_error',
    message: 'the upstream account is out of credit',
    retryable: false,
    when: "the upstream answered 429 `insufficient_quota` or 402 `billing_error` (the relay's own account is out of credit)",
  },
  insufficient_quota: {
    status: 429,
    type: 'insufficient_quota',
    message: 'budget exhausted',
    retryable: false,
    when: "the key's, team's or user's budget is spent (`x-should-retry: false`, no `Retry-After`)",
  },
  daily_quota_exceeded: {
    status: 429,
    type: 'rate_limit_error',
    message: 'daily quota reached',
    retryable: false,
    when: '`dailyRequests` / `dailyTokens` reached; `Retry-After` to 00:00 UTC, `x-should-retry: false`',
  },
  too_many_parallel_requests: {
    status: 429,
    type: 'rate_limit_error',
    message: 'too many requests in flight',
    retryable: true,
    when: "the key's `maxParallel` requests are in flight",
  },
  too_many_auth_failures: {
    status: 429,
    type: 'rate_limit_error',
    message: 'too many failed authentication attempts; try again later',
    retryable: false,
    when: 'a failed authentication from an address with too many already (`x-should-retry: false`); a valid key is still admitted',
  },
  client_stalled: {
    status: 408,
    type: 'timeout_error',
    message: 'the client stopped reading the answer',
    retryable: true,
    when: 'the client left written data unread for `clientStallTimeoutMs`: a stream ends with an SSE error frame (best effort) and the connection is closed',
  },
  client_closed: {
    status: 499,
    type: 'invalid_request_error',
    message: 'the client closed the connection',
    retryable: false,
    when: 'never sent: recorded when the client disconnects before the end',
    sent: false,
  },
  internal_error: {
    status: 500,
    type: 'server_error',
    message: 'The server had an error while processing your request.',
    retryable: true,
    when: 'a handler crashed',
  },
  upstream_error: {
    status: 502,
    type: 'upstream_error',
    message: 'upstream error',
    retryable: true,
    when: 'the upstream failed (5xx, or an error body with a 2xx status)',
  },
  upstream_decode_error: {
    status: 502,
    type: 'upstream_error',
    message: 'upstream returned an empty or unparsable body',
    retryable: true,
    when: "the upstream's answer was empty or unparsable; its status is in the message",
  },
  upstream_auth_error: {
    status: 502,
    type: 'upstream_error',
    message: "upstream rejected the relay's credentials",
    retryable: true,
    when: "the upstream refused the relay's own key (401); the pool disables that key",
  },
  upstream_unreachable: {
    status: 502,
    type: 'upstream_error',
    message: 'upstream could not be reached',
    retryable: true,
    when: 'connection refused or reset before an answer',
  },
  upstream_response_too_large: {
    status: 502,
    type: 'upstream_error',
    message: 'upstream response exceeds the limit',
    retryable: true,
    when: 'an answer above `maxResponseBytes` / `maxEventBytes`',
  },
  upstream_stream_truncated: {
    status: 502,
    type: 'upstream_error',
    message: 'upstream ended the stream before its final event',
    retryable: true,
    when: 'the stream ended without its final event (`[DONE]`, `response.completed`, `message_stop`; an SSE frame once streaming)',
  },
  upstream_overloaded: {
    status: 503,
    type: 'overloaded_error',
    message: 'the upstream is overloaded; retry later',
    retryable: true,
    when: "the upstream said it is overloaded (Anthropic's 529); on Anthropic routes it is a 529 `overloaded_error`",
  },
  overloaded: {
    status: 503,
    type: 'overloaded_error',
    message: 'the server is overloaded; retry later',
    retryable: true,
    when: "the relay cannot take more work now (relay shutting down, the gate's `maxKeys` keys busy)",
  },
  queue_full: {
    status: 503,
    type: 'overloaded_error',
    message: 'the request queue is full',
    retryable: true,
    when: "the concurrency gate's queue is full (`maxQueue`)",
  },
  queue_timeout: {
    status: 503,
    type: 'overloaded_error',
    message: 'timed out waiting for a free slot',
    retryable: true,
    when: 'waited `queueTimeoutMs` in the concurrency gate',
  },
  gate_closed: {
    status: 503,
    type: 'overloaded_error',
    message: 'the server is shutting down; retry later',
    retryable: true,
    when: 'the concurrency gate was closed (shutdown)',
  },
  no_upstream_available: {
    status: 503,
    type: 'overloaded_error',
    message: 'no upstream is available',
    retryable: true,
    when: 'every upstream of the pool is cooling down, disabled, busy or at its cap; `Retry-After` = time to the earliest recovery',
  },
  too_many_live_clients: {
    status: 503,
    type: 'overloaded_error',
    message: 'too many live clients',
    retryable: true,
    when: "`trackerRouter`'s `/live` has `maxLiveClients` clients (`Retry-After: 5`)",
  },
  live_feed_closed: {
    status: 503,
    type: 'overloaded_error',
    message: 'the live feed is closed',
    retryable: true,
    when: "`trackerRouter`'s `/live` after `close()` (`Retry-After: 5`)",
  },
  store_unavailable: {
    status: 503,
    type: 'server_error',
    message: 'the store is unavailable; retry later',
    retryable: true,
    when: "the key store (`keyAuth`, management API) or the distributed gate's Redis cannot answer (see `onStoreError`)",
  },
  upstream_timeout: {
    status: 504,
    type: 'timeout_error',
    message: 'upstream did not answer in time',
    retryable: true,
    when: 'first byte or idle timeout (an SSE frame once streaming), or the upstream answered 408/504',
  },
} as const satisfies Record<string, ErrorSpec>);

/** Every stable code llmux sends or records; a closed set, so a typo does not compile. */
export type LlmuxErrorCode = keyof typeof ERROR_CATALOG;

/** The catalog entry of `code`, or undefined for a code llmux does not own (an upstream's). */
export function errorSpecOf(code: string): ErrorSpec | undefined {
  return Object.hasOwn(ERROR_CATALOG, code) ? (ERROR_CATALOG as Record<string, ErrorSpec>)[code] : undefined;
}

/** Every code of the catalog, in its order. */
export const ERROR_CODES: readonly LlmuxErrorCode[] = Object.freeze(
  Object.keys(ERROR_CATALOG) as LlmuxErrorCode[],
);
