// Bounded JSON body reading: counts bytes as they arrive, refuses past the bound without reading
// the rest, parses the JSON once and stores it in the request context.
import { OptionReader } from '../options.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody, type ReadBodySettings } from '../body/read-body.js';
import { ensureContext, type RequestContext } from '../context.js';
import { errors, LlmuxError, sendError } from '../errors/llmux-error.js';

type Next = (err?: unknown) => void;

/** Options of {@link bodyLimit}. */
export interface BodyLimitOptions {
  /** Largest accepted body in bytes, counted after decompression. Default 1 MiB (1_048_576). */
  maxBytes?: number;
  /**
   * Accept `Content-Encoding: gzip | deflate | br` bodies, decompressing with the limit applied
   * to the decompressed bytes. When false, any encoding but identity is refused with 415.
   * Default true.
   */
  decompress?: boolean;
  /**
   * `'json'` (default): the body must be `application/json` (415 otherwise) holding a JSON object
   * (400 otherwise); it is parsed once into the context and `req.body`.
   * `'none'`: for passthrough routes (uploads): nothing is read or parsed; a body must declare a
   * `Content-Length` (411 otherwise) of at most `maxBytes` (413 otherwise). Node's HTTP parser
   * never delivers more bytes than that header declares.
   */
  parse?: 'json' | 'none';
  /**
   * Deepest nesting of arrays and objects accepted in a JSON body; a deeper one is 400
   * `invalid_json` before it is parsed (a 100 000-deep body would otherwise exhaust the stack).
   * Default 128, far above any real request.
   */
  maxDepth?: number;
}

/** The resolved {@link BodyLimitOptions}. */
export interface BodyLimitSettings extends ReadBodySettings {
  parse: 'json' | 'none';
  maxDepth: number;
}

/** The default body bound: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;
/** The default bound on JSON nesting. */
export const DEFAULT_MAX_JSON_DEPTH = 128;

/** Fills defaults and validates; throws a TypeError naming a bad option. */
export function resolveBodyLimitOptions(
  options: BodyLimitOptions = {},
  owner = 'bodyLimit',
): BodyLimitSettings {
  const read = new OptionReader(owner);
  read.options(options);
  return {
    maxBytes: read.positiveInteger('maxBytes', options.maxBytes, DEFAULT_MAX_BODY_BYTES),
    decompress: read.boolean('decompress', options.decompress, true),
    parse: read.oneOf('parse', options.parse, ['json', 'none'], 'json'),
    maxDepth: read.positiveInteger('maxDepth', options.maxDepth, DEFAULT_MAX_JSON_DEPTH),
  };
}

/**
 * Reads and bounds the request body. Bytes are counted as they arrive, so chunked bodies and
 * lying `Content-Length` headers cannot push it past `maxBytes`: the answer is 413
 * `body_too_large` as soon as the bound is passed, with `Connection: close`, and the rest of the
 * body is never read into memory. Invalid JSON is 400 `invalid_json`; a non-JSON content type
 * is 415 `unsupported_media_type`. When the host already ran `express.json()`, its parsed body
 * is taken as is. Requests without a body (GET, HEAD, DELETE with no body) pass untouched.
 *
 * @example
 * app.post('/v1/chat/completions', bodyLimit({ maxBytes: 2 * 1024 * 1024 }), streamRelay({ upstream }));
 */
export function bodyLimit(options: BodyLimitOptions = {}) {
  const settings = resolveBodyLimitOptions(options);
  return function llmuxBodyLimit(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = ensureContext(req, res);
    if (settings.parse === 'none') {
      const refusal = checkDeclaredLength(req, settings.maxBytes);
      if (refusal === undefined) next();
      else refuseBody(req, res, ctx, refusal);
      return;
    }
    loadJsonBody(req, res, ctx, settings).then((ready) => {
      if (ready) next();
    }, next);
  };
}

/**
 * Makes sure `ctx.body` holds the request's JSON object, reading it under `settings` when no
 * earlier middleware did. Resolves true when the body is ready, false when a response (an error)
 * was already sent or the client left; never rejects for anything the client sent.
 */
export async function loadJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  settings: BodyLimitSettings,
): Promise<boolean> {
  if (ctx.body !== undefined) return true;
  const preParsed = (req as { body?: unknown }).body;
  // body-parser 1 (Express 4) marks `_body`; body-parser 2 (Express 5) only leaves the stream drained.
  if (preParsed !== undefined && ((req as { _body?: boolean })._body === true || req.readableEnded)) {
    // express.json() ran first: take its object rather than reading a drained stream.
    const refusal = bodyShapeError(preParsed, ctx);
    if (refusal !== undefined) {
      refuseBody(req, res, ctx, refusal);
      return false;
    }
    adoptBody(req, ctx, preParsed as Record<string, unknown>, undefined);
    return true;
  }
  if (!hasBody(req)) return true;
  const type = req.headers['content-type'];
  if (type === undefined || !isJsonContentType(type)) {
    refuseBody(req, res, ctx, errors.unsupportedMediaType(type ?? ''));
    return false;
  }
  let raw: Buffer;
  try {
    raw = await readBody(req, settings);
  } catch (failure) {
    if (failure !== 'aborted') refuseBody(req, res, ctx, failure as LlmuxError);
    return false;
  }
  if (nestingExceeds(raw, settings.maxDepth)) {
    refuseBody(req, res, ctx, errors.invalidJson(`nesting deeper than ${settings.maxDepth} levels`));
    return false;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    refuseBody(req, res, ctx, errors.invalidJson((err as Error).message));
    return false;
  }
  const refusal = bodyShapeError(parsed, ctx);
  if (refusal !== undefined) {
    refuseBody(req, res, ctx, refusal);
    return false;
  }
  adoptBody(req, ctx, parsed as Record<string, unknown>, raw);
  return true;
}

/** Longest model name accepted; longer ones are refused rather than carried into records and labels. */
export const MAX_MODEL_NAME_LENGTH = 256;

/**
 * Why a parsed body cannot be relayed: not an object, a model name past any real one, or what the
 * request's protocol refuses (a `stream` that is not a boolean, on every protocol: `"true"` would
 * be relayed as a non-stream request and its stream answer billed as nothing).
 */
function bodyShapeError(body: unknown, ctx: RequestContext): LlmuxError | undefined {
  if (!isJsonObject(body)) return errors.invalidRequest('request body must be a JSON object');
  const model = body.model;
  if (typeof model === 'string' && model.length > MAX_MODEL_NAME_LENGTH) {
    return errors.invalidRequest(`model must be at most ${MAX_MODEL_NAME_LENGTH} characters`, 'model');
  }
  return ctx.protocol.validate(body, ctx.route);
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when `raw` nests arrays and objects deeper than `maxDepth`. Strings are jumped over by
 * native search (most of a large body is string content), so the scan costs a fraction of the
 * parse. A malformed body is left for `JSON.parse` to refuse.
 */
export function nestingExceeds(raw: Buffer, maxDepth: number): boolean {
  let depth = 0;
  const length = raw.length;
  let i = 0;
  while (i < length) {
    const c = raw[i]!;
    if (c === QUOTE) {
      let end = raw.indexOf(QUOTE, i + 1);
      while (end !== -1 && isEscaped(raw, end)) end = raw.indexOf(QUOTE, end + 1);
      if (end === -1) return false;
      i = end + 1;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
    i++;
  }
  return false;
}

/** True when the quote at `at` is escaped: an odd run of backslashes before it. */
function isEscaped(raw: Buffer, at: number): boolean {
  let backslashes = 0;
  for (let k = at - 1; k >= 0 && raw[k] === BACKSLASH; k--) backslashes++;
  return (backslashes & 1) === 1;
}

function adoptBody(
  req: IncomingMessage,
  ctx: RequestContext,
  body: Record<string, unknown>,
  raw: Buffer | undefined,
): void {
  ctx.body = body;
  ctx.rawBody = raw;
  const model = body.model;
  if (typeof model === 'string') ctx.model = model;
  ctx.stream = ctx.protocol.isStream(body);
  // Host handlers see the parsed body, and a later express.json() skips the drained stream.
  const host = req as { body?: unknown; _body?: boolean };
  host.body = body;
  host._body = true;
}

/** 411/413 for a body that must not be read; undefined when it may pass. */
function checkDeclaredLength(req: IncomingMessage, maxBytes: number): LlmuxError | undefined {
  if (!hasBody(req)) return undefined;
  const declared = req.headers['content-length'];
  if (declared === undefined) return errors.lengthRequired();
  const bytes = Number(declared);
  return bytes > maxBytes ? errors.bodyTooLarge(maxBytes) : undefined;
}

/**
 * Sends a body refusal. When the body was not read to its end, the connection is closed after
 * the answer: the unread rest is never taken in, and the next request cannot stall behind it.
 */
function refuseBody(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, err: LlmuxError): void {
  ctx.errorCode = err.code;
  if (!req.complete && !res.headersSent) res.setHeader('Connection', 'close');
  sendError(res, err);
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function isJsonContentType(type: string): boolean {
  const semi = type.indexOf(';');
  const mime = (semi === -1 ? type : type.slice(0, semi)).trim().toLowerCase();
  return mime === 'application/json' || (mime.startsWith('application/') && mime.endsWith('+json'));
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
