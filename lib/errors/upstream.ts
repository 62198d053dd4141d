// Reads an upstream's error answer (a body, an SSE frame) into a failure category and the error
// the client sees: the relay, the pool and the retry policy all judge upstream failures by it.
import { redactSecrets } from '../redact.js';
import { errors, LlmuxError, llmuxError } from './llmux-error.js';

/**
 * What kind of failure an upstream attempt was. `invalid_request` is the request's own fault (a
 * model the relay's project cannot use, a prompt too long or too large): it says nothing of the
 * upstream's health. `auth` is the relay's key refused (401). `cancelled` means the relay stopped
 * the attempt itself (the client left, or a hedge won): not the upstream's fault either.
 */
export type UpstreamErrorCategory =
  'invalid_request' | 'auth' | 'rate_limit' | 'server' | 'timeout' | 'decode' | 'network' | 'cancelled';

/** An upstream failure decoded into a category and the client-facing {@link LlmuxError}. */
export interface DecodedUpstreamError {
  category: UpstreamErrorCategory;
  error: LlmuxError;
  /**
   * The status the failure counts as: the upstream's own when it was an error status, else the
   * one its error body implies (a `rate_limit_error` frame in a 200 stream counts as 429); a 402
   * (the relay's account out of credit) counts as 429, so retry moves on to another member.
   */
  status: number;
}

/**
 * Reads an upstream error body (whatever its status) into a category and the error the client
 * sees. An empty or unparsable body is a decode error that keeps the upstream status in the
 * message, never a success. A 401 becomes 502: the client's key was fine, ours was not. What the
 * request caused is the client's to see (a 403/404 for a model the relay's project cannot use, a
 * prompt over the context window, a request over the upstream's per-request limit). Messages are
 * passed through with secrets redacted.
 */
export function decodeUpstreamError(
  status: number,
  body: Buffer | string | undefined,
  retryAfterSeconds?: number,
): DecodedUpstreamError {
  const parsed = parseErrorObject(body);
  if (parsed === undefined) {
    if (status === 413) return { ...tooLarge(`upstream answered ${status}`), status };
    return {
      category: status === 429 ? 'rate_limit' : 'decode',
      error: errors.upstreamDecode(status),
      status,
    };
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
  if (hint.includes('request_too_large')) return 413;
  if (hint.includes('invalid_request') || hint.includes('context_length')) return 400;
  if (hint.includes('overloaded')) return 529;
  return 502;
}

function categorize(
  status: number,
  e: ParsedUpstreamError,
  retryAfterSeconds: number | undefined,
): DecodedUpstreamError {
  return { status: status === 402 ? 429 : status, ...classify(status, e, retryAfterSeconds) };
}

function classify(
  status: number,
  e: ParsedUpstreamError,
  retryAfterSeconds: number | undefined,
): Omit<DecodedUpstreamError, 'status'> {
  const message = redactSecrets(e.message);
  if (status === 401) {
    return {
      category: 'auth',
      error: llmuxError('upstream_auth_error', {
        message: `upstream rejected the relay's credentials (status ${status})`,
      }),
    };
  }
  if (status === 413 || (status === 429 && isRequestTooLarge(e))) return tooLarge(message);
  if (status === 402 || e.type === 'billing_error') {
    // The relay's own account is out of credit (Anthropic's 402 billing_error): the member's
    // fault, not the request's, so it cools and the request goes on to another member.
    return {
      category: 'rate_limit',
      error: llmuxError('upstream_insufficient_quota', {
        message,
        retryAfterSeconds: retryAfterSeconds ?? 1,
      }),
    };
  }
  if (status === 429) {
    const code = e.code === 'insufficient_quota' ? 'upstream_insufficient_quota' : 'rate_limited';
    return {
      category: 'rate_limit',
      error: llmuxError(code, { message, retryAfterSeconds: retryAfterSeconds ?? 1 }),
    };
  }
  if (status === 400 && isContextExceeded(e)) {
    return {
      category: 'invalid_request',
      error: llmuxError('context_length_exceeded', { message, param: e.param ?? 'messages' }),
    };
  }
  if (status === 529 || e.type === 'overloaded_error') {
    return { category: 'server', error: llmuxError('upstream_overloaded', { message }) };
  }
  if (status === 408 || status === 504) {
    return {
      category: 'timeout',
      error: llmuxError('upstream_timeout', { message }),
    };
  }
  if (status >= 400 && status < 500) {
    // The upstream refused the request itself (a 403/404 for a model the relay's project cannot
    // use among them): the client sees the upstream's own status, type and code (OpenAI SDKs map
    // them to their error classes), the message redacted.
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
    error: llmuxError('upstream_error', { message }),
  };
}

function tooLarge(message: string): Omit<DecodedUpstreamError, 'status'> {
  return { category: 'invalid_request', error: llmuxError('request_too_large', { message }) };
}

/** OpenAI's "Request too large for gpt-4o … Limit 30000, Requested 50000": no wait can help. */
function isRequestTooLarge(e: ParsedUpstreamError): boolean {
  if (e.code === 'request_too_large' || e.type === 'request_too_large') return true;
  if (/request too large/i.test(e.message)) return true;
  const asked = /Limit (\d+), Requested (\d+)/.exec(e.message);
  return asked !== null && Number(asked[2]) > Number(asked[1]);
}

/** OpenAI's `context_length_exceeded`, Anthropic's "prompt is too long", and their kin. */
function isContextExceeded(e: ParsedUpstreamError): boolean {
  if (e.code === 'context_length_exceeded') return true;
  return /context length|context window|prompt is too long|input is too long/i.test(e.message);
}
