// The one error type of llmux and the OpenAI-shaped body it renders to. Every refusal, every
// upstream failure and every recovered crash reaches the client through `sendError`.
import type { ServerResponse } from 'node:http';
import { ERROR_CATALOG, errorSpecOf, type LlmuxErrorCode, type LlmuxErrorType } from './catalog.js';

/** Fields accepted by the {@link LlmuxError} constructor. */
export interface LlmuxErrorInit {
  /** HTTP status sent to the client. */
  status: number;
  /** OpenAI error `type`. */
  type: LlmuxErrorType | (string & {});
  /**
   * Stable machine-readable code. llmux's own errors carry an {@link LlmuxErrorCode} (made by
   * {@link llmuxError}); a relayed upstream error keeps the upstream's code.
   */
  code: string;
  /** The request field at fault, when there is one (OpenAI's `param`). */
  param?: string | null;
  /**
   * Seconds for the `Retry-After` header; set on every 429 and 503 (defaults to 1 there). `null`
   * sends none: waiting cannot help (a spent budget, a request larger than a whole limit).
   */
  retryAfterSeconds?: number | null;
  /** Extra response headers (for example the `RateLimit-*` family). */
  headers?: Record<string, string>;
  /**
   * False when retrying soon cannot help: a 408/409/429/5xx is then sent with
   * `x-should-retry: false`, which OpenAI SDKs obey instead of sleeping on `Retry-After`.
   * Default: the catalog's `retryable` for a catalogued code, else unset.
   */
  shouldRetry?: boolean;
  /** The underlying error, kept for logs only; never sent to the client. */
  cause?: unknown;
}

/**
 * The error llmux throws and renders. `toJSON()` gives the OpenAI body
 * `{"error":{"message","type","code","param"}}` that OpenAI SDKs parse. llmux makes its own with
 * {@link llmuxError}; a host may construct one directly for its own refusals.
 *
 * @example
 * throw new LlmuxError('this tenant is suspended', {
 *   status: 403, type: 'permission_error', code: 'tenant_suspended',
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
  readonly shouldRetry: boolean | undefined;

  constructor(message: string, init: LlmuxErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.type = init.type;
    this.code = init.code;
    this.param = init.param ?? null;
    this.headers = init.headers;
    this.shouldRetry = init.shouldRetry ?? errorSpecOf(init.code)?.retryable;
    this.retryAfterSeconds =
      init.retryAfterSeconds === null
        ? undefined
        : (init.retryAfterSeconds ?? (init.status === 429 || init.status === 503 ? 1 : undefined));
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

/** What a raiser may set on a catalogued error; status and type come from the catalog. */
export interface LlmuxErrorOptions {
  /** The message; default the catalog's. Never a secret. */
  message?: string;
  /** Another 4xx status, only for codes the catalog marks `anyClientStatus`. */
  status?: number;
  param?: string | null;
  retryAfterSeconds?: number | null;
  headers?: Record<string, string>;
  shouldRetry?: boolean;
  cause?: unknown;
}

/**
 * The {@link LlmuxError} for a catalogued `code`: its status and type come from
 * {@link ERROR_CATALOG}, so the same code always answers the same way.
 *
 * @example
 * throw llmuxError('model_not_allowed', { message: 'model "gpt-5" is not allowed for this key', param: 'model' });
 */
export function llmuxError(code: LlmuxErrorCode, options: LlmuxErrorOptions = {}): LlmuxError {
  const spec = ERROR_CATALOG[code] as (typeof ERROR_CATALOG)[LlmuxErrorCode] & { anyClientStatus?: true };
  let status: number = spec.status;
  if (options.status !== undefined && options.status !== status) {
    if (spec.anyClientStatus !== true || !(options.status >= 400 && options.status < 500)) {
      throw new TypeError(`llmuxError: ${code} is always sent with status ${status}, got ${options.status}`);
    }
    status = options.status;
  }
  return new LlmuxError(options.message ?? spec.message, {
    status,
    type: spec.type,
    code,
    param: options.param,
    retryAfterSeconds: options.retryAfterSeconds,
    headers: options.headers,
    shouldRetry: options.shouldRetry,
    cause: options.cause,
  });
}

/** True when `value` is an {@link LlmuxError} (also across duplicated package copies). */
export function isLlmuxError(value: unknown): value is LlmuxError {
  return value instanceof LlmuxError || (value instanceof Error && value.name === 'LlmuxError');
}

/** Shorthands for the errors llmux raises most; each returns a fresh {@link LlmuxError} from the catalog. */
export const errors = {
  invalidJson: (detail: string) =>
    llmuxError('invalid_json', { message: `request body is not valid JSON: ${detail}` }),
  invalidRequest: (message: string, param: string | null = null) =>
    llmuxError('invalid_request', { message, param }),
  invalidApiKey: () => llmuxError('invalid_api_key'),
  bodyTooLarge: (maxBytes: number) =>
    llmuxError('body_too_large', { message: `request body exceeds the limit of ${maxBytes} bytes` }),
  unsupportedMediaType: (contentType: string) =>
    llmuxError('unsupported_media_type', {
      message: `content type ${JSON.stringify(contentType)} is not supported; send application/json`,
    }),
  unsupportedEncoding: (encoding: string) =>
    llmuxError('unsupported_encoding', {
      message: `content encoding ${JSON.stringify(encoding)} is not supported`,
    }),
  lengthRequired: () => llmuxError('length_required'),
  notFound: (what: string) => llmuxError('not_found', { message: `${what} not found` }),
  internal: (cause?: unknown) => llmuxError('internal_error', { cause }),
  upstreamTimeout: (phase: 'first byte' | 'idle' | 'response') =>
    llmuxError('upstream_timeout', { message: `upstream did not answer in time (${phase} timeout)` }),
  upstreamUnreachable: (cause?: unknown) => llmuxError('upstream_unreachable', { cause }),
  upstreamTooLarge: (maxBytes: number) =>
    llmuxError('upstream_response_too_large', {
      message: `upstream response exceeds the limit of ${maxBytes} bytes`,
    }),
  upstreamTruncated: () => llmuxError('upstream_stream_truncated'),
  upstreamDecode: (status: number, what = 'body') =>
    llmuxError('upstream_decode_error', {
      message: `upstream returned an empty or unparsable ${what} (status ${status})`,
    }),
  storeUnavailable: (what: string, cause?: unknown) =>
    llmuxError('store_unavailable', { message: `the ${what} is unavailable; retry later`, cause }),
  gateClosed: () => llmuxError('gate_closed'),
  overloaded: (message?: string, retryAfterSeconds = 1) =>
    llmuxError('overloaded', { message, retryAfterSeconds }),
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
        return llmuxError('unsupported_media_type', { message: 'the request charset is not supported' });
    }
    const status = typeof e.status === 'number' ? e.status : e.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return llmuxError('invalid_request', { status, cause: err });
    }
  }
  return errors.internal(err);
}

/**
 * How a protocol's clients expect errors: the status and body of a refusal, and the frame that
 * ends a started stream. The OpenAI shape is the default; a request's protocol (its context's
 * `protocol`) may have another (Anthropic's).
 */
export interface ErrorShape {
  /** The status and JSON body of `err`. */
  renderError(err: LlmuxError): { status: number; body: string };
  /** An SSE frame carrying `err`, for a stream that already started. */
  errorFrame(err: LlmuxError): string;
}

/** The OpenAI error shape: `{"error":{"message","type","code","param"}}`, as OpenAI SDKs parse it. */
export const OPENAI_ERROR_SHAPE: ErrorShape = Object.freeze({
  renderError: (err: LlmuxError) => ({ status: err.status, body: JSON.stringify(err.toJSON()) }),
  errorFrame: (err: LlmuxError) => `event: error\ndata: ${JSON.stringify(err.toJSON())}\n\n`,
});

/** The error shape of the request `res` answers: its protocol's, else OpenAI's. */
export function errorShapeOf(res: ServerResponse): ErrorShape {
  const locals = (res as { locals?: { llmux?: { protocol?: ErrorShape } } }).locals;
  return locals?.llmux?.protocol ?? OPENAI_ERROR_SHAPE;
}

/** Statuses OpenAI SDKs retry by themselves, unless told `x-should-retry: false`. */
function retriedBySdks(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/**
 * Writes `err` as an OpenAI-shaped JSON response. Does nothing if headers were already sent
 * (callers handle started responses themselves). `Retry-After` is set on 429 and 503;
 * `x-should-retry: false` when waiting cannot help (see {@link LlmuxErrorInit.shouldRetry}).
 */
export function sendError(res: ServerResponse, err: LlmuxError): void {
  if (res.headersSent || res.destroyed) return;
  const { status, body } = errorShapeOf(res).renderError(err);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  if (err.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(err.retryAfterSeconds));
  if (err.shouldRetry === false && retriedBySdks(status)) res.setHeader('x-should-retry', 'false');
  if (err.headers) for (const name in err.headers) res.setHeader(name, err.headers[name]!);
  res.end(body);
}

/** `error` with `headers` added to its own (a copy; the original is left as it is). */
export function withHeaders(error: LlmuxError, headers: Record<string, string>): LlmuxError {
  return new LlmuxError(error.message, {
    status: error.status,
    type: error.type,
    code: error.code,
    param: error.param,
    retryAfterSeconds: error.retryAfterSeconds ?? null,
    headers: { ...headers, ...error.headers },
    shouldRetry: error.shouldRetry,
    cause: error.cause,
  });
}

/** An SSE frame carrying `err` in the OpenAI shape, for responses whose stream already started. */
export function sseErrorFrame(err: LlmuxError): string {
  return OPENAI_ERROR_SHAPE.errorFrame(err);
}
