// The one error type of llmux and the OpenAI-shaped body it renders to. Every refusal, every
// upstream failure and every recovered crash reaches the client through `sendError`.
import type { ServerResponse } from 'node:http';
import { redactSecrets } from './redact.js';

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

/** Stable error codes. Tests and clients match on these, never on message text. */
export type LlmuxErrorCode =
  | 'invalid_json'
  | 'invalid_request'
  | 'unsupported_media_type'
  | 'unsupported_encoding'
  | 'length_required'
  | 'invalid_api_key'
  | 'model_not_allowed'
  | 'not_found'
  | 'body_too_large'
  | 'rate_limited'
  | 'insufficient_quota'
  | 'internal_error'
  | 'upstream_error'
  | 'upstream_auth_error'
  | 'upstream_decode_error'
  | 'upstream_response_too_large'
  | 'upstream_stream_truncated'
  | 'upstream_unreachable'
  | 'overloaded'
  | 'upstream_timeout'
  | (string & {});

/** Fields accepted by the {@link LlmuxError} constructor. */
export interface LlmuxErrorInit {
  /** HTTP status sent to the client. */
  status: number;
  /** OpenAI error `type`. */
  type: LlmuxErrorType | (string & {});
  /** Stable machine-readable code. */
  code: LlmuxErrorCode;
  /** The request field at fault, when there is one (OpenAI's `param`). */
  param?: string | null;
  /** Seconds for the `Retry-After` header; set on every 429 and 503 (defaults to 1 there). */
  retryAfterSeconds?: number;
  /** Extra response headers (for example the `RateLimit-*` family). */
  headers?: Record<string, string>;
  /** The underlying error, kept for logs only; never sent to the client. */
  cause?: unknown;
}

/**
 * The error llmux throws and renders. `toJSON()` gives the OpenAI body
 * `{"error":{"message","type","code","param"}}` that OpenAI SDKs parse.
 *
 * @example
 * throw new LlmuxError('model gpt-5 is not allowed for this key', {
 *   status: 403, type: 'permission_error', code: 'model_not_allowed', param: 'model',
 * });
 */
export class LlmuxError extends Error {
  override readonly name = 'LlmuxError';
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly param: string | null;
  readonly retryAfterSeconds: number | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(message: string, init: LlmuxErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.type = init.type;
    this.code = init.code;
    this.param = init.param ?? null;
    this.headers = init.headers;
    this.retryAfterSeconds =
      init.retryAfterSeconds ?? (init.status === 429 || init.status === 503 ? 1 : undefined);
  }

  /** The OpenAI-shaped body. */
  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** The body every llmux error response carries. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

/** True when `value` is an {@link LlmuxError} (also across duplicated package copies). */
export function isLlmuxError(value: unknown): value is LlmuxError {
  return value instanceof LlmuxError || (value instanceof Error && value.name === 'LlmuxError');
}

/** Shorthands for the errors llmux raises itself; each returns a fresh {@link LlmuxError}. */
export const errors = {
  invalidJson: (detail: string) =>
    new LlmuxError(`request body is not valid JSON: ${detail}`, {
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_json',
    }),
  invalidRequest: (message: string, param: string | null = null) =>
    new LlmuxError(message, { status: 400, type: 'invalid_request_error', code: 'invalid_request', param }),
  invalidApiKey: () =>
    new LlmuxError('Invalid API key provided.', {
      status: 401,
      type: 'authentication_error',
      code: 'invalid_api_key',
    }),
  bodyTooLarge: (maxBytes: number) =>
    new LlmuxError(`request body exceeds the limit of ${maxBytes} bytes`, {
      status: 413,
      type: 'invalid_request_error',
      code: 'body_too_large',
    }),
  unsupportedMediaType: (contentType: string) =>
    new LlmuxError(`content type ${JSON.stringify(contentType)} is not supported; send application/json`, {
      status: 415,
      type: 'invalid_request_error',
      code: 'unsupported_media_type',
    }),
  unsupportedEncoding: (encoding: string) =>
    new LlmuxError(`content encoding ${JSON.stringify(encoding)} is not supported`, {
      status: 415,
      type: 'invalid_request_error',
      code: 'unsupported_encoding',
    }),
  lengthRequired: () =>
    new LlmuxError('a Content-Length header is required for this route', {
      status: 411,
      type: 'invalid_request_error',
      code: 'length_required',
    }),
  notFound: (what: string) =>
    new LlmuxError(`${what} not found`, { status: 404, type: 'invalid_request_error', code: 'not_found' }),
  internal: (cause?: unknown) =>
    new LlmuxError('The server had an error while processing your request.', {
      status: 500,
      type: 'server_error',
      code: 'internal_error',
      cause,
    }),
  upstreamTimeout: (phase: 'first byte' | 'idle') =>
    new LlmuxError(`upstream did not answer in time (${phase} timeout)`, {
      status: 504,
      type: 'timeout_error',
      code: 'upstream_timeout',
    }),
  upstreamUnreachable: (cause?: unknown) =>
    new LlmuxError('upstream could not be reached', {
      status: 502,
      type: 'upstream_error',
      code: 'upstream_unreachable',
      cause,
    }),
  upstreamTooLarge: (maxBytes: number) =>
    new LlmuxError(`upstream response exceeds the limit of ${maxBytes} bytes`, {
      status: 502,
      type: 'upstream_error',
      code: 'upstream_response_too_large',
    }),
  upstreamTruncated: () =>
    new LlmuxError('upstream ended the stream before [DONE]', {
      status: 502,
      type: 'upstream_error',
      code: 'upstream_stream_truncated',
    }),
  upstreamDecode: (status: number, what = 'body') =>
    new LlmuxError(`upstream returned an empty or unparsable ${what} (status ${status})`, {
      status: 502,
      type: 'upstream_error',
      code: 'upstream_decode_error',
    }),
  storeUnavailable: (what: string, cause?: unknown) =>
    new LlmuxError(`the ${what} is unavailable; retry later`, {
      status: 503,
      type: 'server_error',
      code: 'store_unavailable',
      retryAfterSeconds: 1,
      cause,
    }),
  gateClosed: () =>
    new LlmuxError('the server is shutting down; retry later', {
      status: 503,
      type: 'overloaded_error',
      code: 'gate_closed',
      retryAfterSeconds: 1,
    }),
  overloaded: (message = 'the server is overloaded; retry later', retryAfterSeconds = 1) =>
    new LlmuxError(message, {
      status: 503,
      type: 'overloaded_error',
      code: 'overloaded',
      retryAfterSeconds,
    }),
};

/** Converts anything thrown into an {@link LlmuxError}; unknown errors become a 500. */
export function toLlmuxError(err: unknown): LlmuxError {
  if (isLlmuxError(err)) return err;
  // body-parser (express.json) and other http-errors carry a status; keep their meaning (a
  // client mistake stays a 4xx), never their text.
  if (typeof err === 'object' && err !== null) {
    const e = err as { type?: unknown; status?: unknown; statusCode?: unknown; limit?: unknown };
    switch (e.type) {
      case 'entity.too.large':
        return errors.bodyTooLarge(Number(e.limit) || 0);
      case 'entity.parse.failed':
        return errors.invalidJson('could not parse body');
      case 'encoding.unsupported':
        return errors.unsupportedEncoding('unknown');
      case 'charset.unsupported':
        return new LlmuxError('the request charset is not supported', {
          status: 415,
          type: 'invalid_request_error',
          code: 'unsupported_media_type',
        });
    }
    const status = typeof e.status === 'number' ? e.status : e.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return new LlmuxError('the request could not be read', {
        status,
        type: 'invalid_request_error',
        code: 'invalid_request',
        cause: err,
      });
    }
  }
  return errors.internal(err);
}

/**
 * Writes `err` as an OpenAI-shaped JSON response. Does nothing if headers were already sent
 * (callers handle started responses themselves). `Retry-After` is set on 429 and 503.
 */
export function sendError(res: ServerResponse, err: LlmuxError): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(err.toJSON());
  res.statusCode = err.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(err.retryAfterSeconds));
  if (err.headers) for (const name in err.headers) res.setHeader(name, err.headers[name]!);
  res.end(body);
}

/** An SSE frame carrying `err`, for responses whose stream already started. */
export function sseErrorFrame(err: LlmuxError): string {
  return `event: error\ndata: ${JSON.stringify(err.toJSON())}\n\n`;
}

/**
 * What kind of failure an upstream attempt was. `cancelled` means the relay stopped the attempt
 * itself (the client left, or a hedge won): not the upstream's fault.
 */
export type UpstreamErrorCategory =
  'invalid_request' | 'auth' | 'rate_limit' | 'server' | 'timeout' | 'decode' | 'network' | 'cancelled';

/** An upstream failure decoded into a category and the client-facing {@link LlmuxError}. */
export interface DecodedUpstreamError {
  category: UpstreamErrorCategory;
  error: LlmuxError;
}

/**
 * Reads an upstream error body (whatever its status) into a category and the error the client
 * sees. An empty or unparsable body is a decode error that keeps the upstream status in the
 * message, never a success. Upstream auth failures become 502: the client's key was fine, ours
 * was not. Messages are passed through with secrets redacted.
 */
export function decodeUpstreamError(
  status: number,
  body: Buffer | string | undefined,
  retryAfterSeconds?: number,
): DecodedUpstreamError {
  const parsed = parseErrorObject(body);
  if (parsed === undefined) {
    return { category: status === 429 ? 'rate_limit' : 'decode', error: errors.upstreamDecode(status) };
  }
  return categorize(status >= 400 ? status : statusFromError(parsed), parsed, retryAfterSeconds);
}

/** Maps an already-parsed upstream `error` object (for example from an SSE frame). */
export function decodeUpstreamErrorObject(status: number, errorObject: unknown): DecodedUpstreamError {
  const parsed = normalizeErrorObject(errorObject);
  return categorize(status >= 400 ? status : statusFromError(parsed), parsed, undefined);
}

interface ParsedUpstreamError {
  message: string;
  type: string | null;
  code: string | null;
  param: string | null;
}

function parseErrorObject(body: Buffer | string | undefined): ParsedUpstreamError | undefined {
  if (body === undefined || body.length === 0) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null) return undefined;
  const errorField = (json as { error?: unknown }).error;
  if (errorField === undefined || errorField === null) return undefined;
  return normalizeErrorObject(errorField);
}

function normalizeErrorObject(errorField: unknown): ParsedUpstreamError {
  if (typeof errorField === 'string') return { message: errorField, type: null, code: null, param: null };
  const e = (typeof errorField === 'object' && errorField !== null ? errorField : {}) as Record<
    string,
    unknown
  >;
  return {
    message: typeof e.message === 'string' && e.message.length > 0 ? e.message : 'upstream error',
    type: typeof e.type === 'string' ? e.type : null,
    code: typeof e.code === 'string' ? e.code : typeof e.code === 'number' ? String(e.code) : null,
    param: typeof e.param === 'string' ? e.param : null,
  };
}

function statusFromError(e: ParsedUpstreamError): number {
  const hint = `${e.type ?? ''} ${e.code ?? ''}`;
  if (hint.includes('rate_limit') || hint.includes('insufficient_quota')) return 429;
  if (hint.includes('authentication') || hint.includes('invalid_api_key')) return 401;
  if (hint.includes('permission')) return 403;
  if (hint.includes('invalid_request') || hint.includes('context_length')) return 400;
  return 502;
}

function categorize(
  status: number,
  e: ParsedUpstreamError,
  retryAfterSeconds: number | undefined,
): DecodedUpstreamError {
  const message = redactSecrets(e.message);
  if (status === 401 || status === 403) {
    return {
      category: 'auth',
      error: new LlmuxError(`upstream rejected the relay's credentials (status ${status})`, {
        status: 502,
        type: 'upstream_error',
        code: 'upstream_auth_error',
      }),
    };
  }
  if (status === 429) {
    const code = e.code === 'insufficient_quota' ? 'upstream_insufficient_quota' : 'rate_limited';
    return {
      category: 'rate_limit',
      error: new LlmuxError(message, {
        status: 429,
        type: 'rate_limit_error',
        code,
        retryAfterSeconds: retryAfterSeconds ?? 1,
      }),
    };
  }
  if (status === 408 || status === 504) {
    return {
      category: 'timeout',
      error: new LlmuxError(message, { status: 504, type: 'timeout_error', code: 'upstream_timeout' }),
    };
  }
  if (status >= 400 && status < 500) {
    return {
      category: 'invalid_request',
      error: new LlmuxError(message, {
        status,
        type: e.type ?? 'invalid_request_error',
        code: e.code ?? 'invalid_request',
        param: e.param,
      }),
    };
  }
  return {
    category: 'server',
    error: new LlmuxError(message, {
      status: 502,
      type: 'upstream_error',
      code: 'upstream_error',
    }),
  };
}
