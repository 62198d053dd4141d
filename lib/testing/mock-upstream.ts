// A real OpenAI-compatible HTTP server for tests and benchmarks: scripted behaviours (status, delays,
// SSE chunking, resets, error frames), a bounded record of what it received, and a close() that leaves nothing.
import { EventEmitter } from 'node:events';
import { createServer, IncomingMessage } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * How the mock answers one request. Every field is optional; an empty object is the plain default answer.
 * Fields marked "SSE" only apply to streamed chat/text completions (`"stream": true`).
 */
export interface MockBehaviour {
  /** HTTP status, 200–599. Default 200. At 400 or above an OpenAI-shaped error body is sent unless `body` or `rawBody` is given. */
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
   * Number of content chunks; also `completion_tokens` and the number of words in the JSON
   * content. Default 3. Like a real model, a request's `max_completion_tokens`/`max_tokens`
   * caps it.
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
  /** SSE: end the response cleanly without the final `data: [DONE]`. */
  omitDone?: boolean;
  /** Never send `usage`, in JSON or SSE (not even `"usage":null`). */
  omitUsage?: boolean;
  /** SSE: after this many content chunks send a `mock_stream_error` error frame and end without `[DONE]`. */
  errorFrameAfterChunks?: number;
  /** The word sent in every chunk (followed by a space) instead of `tok0`, `tok1`, …. */
  content?: string;
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
  /** Clears the queue, the default behaviour, the records, the `seq` counter and the settled count. */
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

type MutableRecord = { -readonly [K in keyof RecordedRequest]: RecordedRequest[K] };
type HeaderValue = string | number | string[];
type CompletionKind = 'chat' | 'text';

/** A behaviour validated and pre-serialised once, when it is queued or set. */
interface ResolvedBehaviour {
  readonly status: number;
  /** The whole scripted response body (given `body`/`rawBody`, or the error body of a status >= 400). */
  readonly scriptedBody: string | undefined;
  readonly retryAfter: string | undefined;
  readonly extraHeaders: readonly (readonly [string, HeaderValue])[];
  readonly delayBeforeHeadersMs: number;
  readonly chunks: number;
  readonly chunkDelayMs: number;
  readonly resetBeforeHeaders: boolean;
  /** -1 for never, else clamped to `chunks`. */
  readonly resetAfterChunks: number;
  /** -1 for never, else clamped to `chunks`. */
  readonly errorFrameAfterChunks: number;
  /** -1 for never, else clamped to `chunks`. */
  readonly stallAfterChunks: number;
  /** -1 for a stall without end. */
  readonly stallMs: number;
  readonly omitDone: boolean;
  readonly omitUsage: boolean;
  /** JSON string literal of `content + ' '`, or undefined for `tok<i> `. */
  readonly wordJson: string | undefined;
  readonly word: string | undefined;
}

interface ResolvedOptions {
  readonly host: string;
  readonly port: number;
  readonly maxRecorded: number;
  readonly maxBodyBytes: number;
  readonly keepAliveTimeoutMs: number;
}

interface SettledWaiter {
  readonly count: number;
  readonly resolve: (records: RecordedRequest[]) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_CHUNKS = 3;
const DEFAULT_WAIT_TIMEOUT_MS = 5000;
const EMBEDDING_DIMENSIONS = 8;
const STREAM_ERROR_FRAME =
  'data: {"error":{"message":"mock stream error","type":"server_error","code":"mock_stream_error"}}\n\n';
const DONE_FRAME = 'data: [DONE]\n\n';
const MODELS_BODY = JSON.stringify({
  object: 'list',
  data: [
    { id: 'mock-model', object: 'model', created: 1700000000, owned_by: 'llmux-mock' },
    { id: 'mock-embedding', object: 'model', created: 1700000000, owned_by: 'llmux-mock' },
  ],
});

function fail(where: string, name: string, expected: string, value: unknown): never {
  throw new TypeError(`${where}: ${name} must be ${expected}, got ${show(value)}`);
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function integerIn(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(where, name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

function flag(where: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') fail(where, name, 'a boolean', value);
  return value;
}

function optionalString(where: string, name: string, value: unknown): string | undefined {
  if (value !== undefined && typeof value !== 'string') fail(where, name, 'a string', value);
  return value;
}

function resolveOptions(options: MockUpstreamOptions): ResolvedOptions {
  const where = 'createMockUpstream';
  const host = options.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') fail(where, 'host', 'a non-empty string', host);
  return {
    host,
    port: integerIn(where, 'port', options.port, 0, 0, 65535),
    maxRecorded: integerIn(where, 'maxRecorded', options.maxRecorded, 1000, 0, Number.MAX_SAFE_INTEGER),
    maxBodyBytes: integerIn(where, 'maxBodyBytes', options.maxBodyBytes, 50 * 1024 * 1024, 1, 2 ** 31 - 1),
    keepAliveTimeoutMs: integerIn(
      where,
      'keepAliveTimeoutMs',
      options.keepAliveTimeoutMs,
      5000,
      1,
      2 ** 31 - 1,
    ),
  };
}

function errorTypeAndCode(status: number): [type: string, code: string] {
  switch (status) {
    case 401:
      return ['authentication_error', 'invalid_api_key'];
    case 403:
      return ['permission_error', 'permission_denied'];
    case 404:
      return ['invalid_request_error', 'not_found'];
    case 408:
      return ['timeout_error', 'request_timeout'];
    case 413:
      return ['invalid_request_error', 'body_too_large'];
    case 429:
      return ['rate_limit_error', 'rate_limit_exceeded'];
    case 503:
      return ['server_error', 'service_unavailable'];
    case 504:
      return ['timeout_error', 'gateway_timeout'];
    default:
      return status < 500 ? ['invalid_request_error', 'invalid_request'] : ['server_error', 'server_error'];
  }
}

function errorJson(message: string, type: string, code: string, param: string | null = null): string {
  return JSON.stringify({ error: { message, type, code, param } });
}

function resolveBehaviour(behaviour: MockBehaviour): ResolvedBehaviour {
  const where = 'MockBehaviour';
  if (typeof behaviour !== 'object' || behaviour === null) fail(where, 'behaviour', 'an object', behaviour);
  const status = integerIn(where, 'status', behaviour.status, 200, 200, 599);
  const rawBody = optionalString(where, 'rawBody', behaviour.rawBody);
  if (rawBody !== undefined && behaviour.body !== undefined) {
    throw new TypeError(`${where}: set body or rawBody, not both`);
  }
  let scriptedBody = rawBody;
  if (behaviour.body !== undefined) {
    scriptedBody = JSON.stringify(behaviour.body) as string | undefined;
    if (scriptedBody === undefined) fail(where, 'body', 'JSON-serialisable', behaviour.body);
  } else if (scriptedBody === undefined && status >= 400) {
    const [type, code] = errorTypeAndCode(status);
    scriptedBody = errorJson(`mock error ${status}`, type, code);
  }
  const extraHeaders: [string, HeaderValue][] = [];
  if (behaviour.headers !== undefined) {
    if (typeof behaviour.headers !== 'object' || behaviour.headers === null) {
      fail(where, 'headers', 'an object', behaviour.headers);
    }
    for (const [name, value] of Object.entries(behaviour.headers)) {
      extraHeaders.push([name.toLowerCase(), Array.isArray(value) ? [...value] : value]);
    }
  }
  const chunks = integerIn(where, 'chunks', behaviour.chunks, DEFAULT_CHUNKS, 0, 1_000_000);
  const resetAfterChunks = integerIn(where, 'resetAfterChunks', behaviour.resetAfterChunks, -1, 0, 1_000_000);
  const errorAfter = integerIn(
    where,
    'errorFrameAfterChunks',
    behaviour.errorFrameAfterChunks,
    -1,
    0,
    1_000_000,
  );
  const stallAfter = integerIn(where, 'stallAfterChunks', behaviour.stallAfterChunks, -1, 0, 1_000_000);
  const word = optionalString(where, 'content', behaviour.content);
  return Object.freeze({
    status,
    scriptedBody,
    retryAfter: optionalString(where, 'retryAfter', behaviour.retryAfter),
    extraHeaders: Object.freeze(extraHeaders),
    delayBeforeHeadersMs: integerIn(
      where,
      'delayBeforeHeadersMs',
      behaviour.delayBeforeHeadersMs,
      0,
      0,
      2 ** 31 - 1,
    ),
    chunks,
    chunkDelayMs: integerIn(where, 'chunkDelayMs', behaviour.chunkDelayMs, 0, 0, 2 ** 31 - 1),
    resetBeforeHeaders: flag(where, 'resetBeforeHeaders', behaviour.resetBeforeHeaders),
    resetAfterChunks: resetAfterChunks < 0 ? -1 : Math.min(resetAfterChunks, chunks),
    errorFrameAfterChunks: errorAfter < 0 ? -1 : Math.min(errorAfter, chunks),
    stallAfterChunks: stallAfter < 0 ? -1 : Math.min(stallAfter, chunks),
    stallMs: integerIn(where, 'stallMs', behaviour.stallMs, -1, 0, 2 ** 31 - 1),
    omitDone: flag(where, 'omitDone', behaviour.omitDone),
    omitUsage: flag(where, 'omitUsage', behaviour.omitUsage),
    wordJson: word === undefined ? undefined : JSON.stringify(`${word} `),
    word,
  });
}

const PLAIN: ResolvedBehaviour = resolveBehaviour({});

/** `max_completion_tokens` or `max_tokens` of a request body, when it sets one. */
function completionCap(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { max_completion_tokens: modern, max_tokens: legacy } = body as Record<string, unknown>;
  const cap = modern ?? legacy;
  return typeof cap === 'number' && Number.isSafeInteger(cap) && cap >= 0 ? cap : undefined;
}

/** The behaviour with at most `cap` chunks (its chunk-indexed events clamped alike). */
function capChunks(behaviour: ResolvedBehaviour, cap: number | undefined): ResolvedBehaviour {
  if (cap === undefined || cap >= behaviour.chunks) return behaviour;
  const clamp = (at: number) => (at < 0 ? at : Math.min(at, cap));
  return {
    ...behaviour,
    chunks: cap,
    resetAfterChunks: clamp(behaviour.resetAfterChunks),
    errorFrameAfterChunks: clamp(behaviour.errorFrameAfterChunks),
    stallAfterChunks: clamp(behaviour.stallAfterChunks),
  };
}

function fieldOf(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

function isWhitespace(code: number): boolean {
  return (
    code === 32 ||
    (code >= 9 && code <= 13) ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/** Whitespace-separated words, counted without allocating. */
function countWords(text: string): number {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    if (isWhitespace(text.charCodeAt(i))) inWord = false;
    else if (!inWord) {
      inWord = true;
      words++;
    }
  }
  return words;
}

function promptTokens(body: unknown, kind: CompletionKind): number {
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

/** A deterministic unit-range vector per input (FNV-1a seed, xorshift sequence). */
function embeddingOf(seed: string): number[] {
  let hash = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) hash = Math.imul(hash ^ seed.charCodeAt(i), 0x01000193);
  hash = hash | 0 || 1;
  const vector = new Array<number>(EMBEDDING_DIMENSIONS);
  for (let i = 0; i < EMBEDDING_DIMENSIONS; i++) {
    hash ^= hash << 13;
    hash ^= hash >>> 17;
    hash ^= hash << 5;
    vector[i] = Math.round(((hash >>> 0) / 0xffffffff) * 2e6 - 1e6) / 1e6;
  }
  return vector;
}

function modelOf(body: unknown, fallback: string): string {
  const model = fieldOf(body, 'model');
  return typeof model === 'string' ? model : fallback;
}

/** Node's request with a slot for its exchange, so shared listeners can reach it through `this`. */
class MockRequest extends IncomingMessage {
  exchange: Exchange | undefined = undefined;
}

function onRequestData(this: MockRequest, chunk: Buffer): void {
  this.exchange?.onData(chunk);
}

function onRequestEnd(this: MockRequest): void {
  this.exchange?.onEnd();
}

function ignoreError(): void {
  // A client that leaves mid-body makes the request emit 'error'; the response 'close' handles it.
}

function onResponseClose(this: ServerResponse<MockRequest>): void {
  this.req.exchange?.settle();
}

function onResponseDrain(this: ServerResponse<MockRequest>): void {
  this.req.exchange?.streamStep();
}

function onExchangeTimer(exchange: Exchange): void {
  exchange.onTimer();
}

function destroyThisSocket(this: Socket): void {
  this.destroy();
}

/** One request/response pair: reads the body, applies the behaviour, streams, and settles exactly once. */
class Exchange {
  readonly record: MutableRecord;
  private behaviour: ResolvedBehaviour | undefined;
  private behaviourError: string | undefined = undefined;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  private overflowed = false;
  private invalidJson = false;
  private timer: NodeJS.Timeout | undefined = undefined;
  private streaming = false;
  private delayElapsed = false;
  private stalled = false;
  private endedByMock = false;
  private cancelled = false;
  private done = false;
  private kind: CompletionKind = 'chat';
  private envelope = '';
  private usageNull = '';
  private sent = 0;
  private completionTokens = 0;
  private promptTokenCount = 0;
  private includeUsage = false;

  constructor(
    private readonly owner: MockUpstreamServer,
    private readonly req: MockRequest,
    private readonly res: ServerResponse<MockRequest>,
    seq: number,
    readonly generation: number,
  ) {
    this.record = {
      seq,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      rawBody: '',
      body: undefined,
      receivedAt: Date.now(),
      aborted: false,
      completed: false,
      settled: false,
    };
    this.behaviour = this.record.method === 'POST' ? owner.takeQueued() : PLAIN;
  }

  /** Starts reading the body; the response follows from `onEnd`. */
  start(): void {
    const { req, res } = this;
    req.exchange = this;
    res.on('close', onResponseClose);
    req.on('error', ignoreError);
    if (Number(req.headers['content-length']) > this.owner.maxBodyBytes) {
      this.overflow();
      return;
    }
    req.on('data', onRequestData);
    req.on('end', onRequestEnd);
  }

  onData(chunk: Buffer): void {
    if (this.overflowed) return;
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.owner.maxBodyBytes) this.overflow();
    else this.bodyChunks.push(chunk);
  }

  onEnd(): void {
    if (this.overflowed || this.done) return;
    const chunks = this.bodyChunks;
    this.bodyChunks = [];
    if (chunks.length > 0) {
      const first = chunks[0] as Buffer;
      const raw =
        chunks.length === 1 ? first.toString('utf8') : Buffer.concat(chunks, this.bodyBytes).toString('utf8');
      this.record.rawBody = raw;
      try {
        this.record.body = JSON.parse(raw);
      } catch {
        this.invalidJson = true;
      }
    }
    this.owner.emitRecord('request', this.record);
    if (this.behaviour === undefined) {
      try {
        this.behaviour = this.owner.defaultBehaviourFor(this.record);
      } catch (error) {
        this.behaviour = PLAIN;
        this.behaviourError = error instanceof Error ? error.message : String(error);
      }
    }
    // Like a real model, the mock stops at the request's own cap.
    this.behaviour = capChunks(this.behaviour, completionCap(this.record.body));
    if (this.done || this.cancelled) return; // a listener or the factory closed the mock
    if (this.behaviour.delayBeforeHeadersMs > 0) this.schedule(this.behaviour.delayBeforeHeadersMs);
    else this.respond();
  }

  onTimer(): void {
    this.timer = undefined;
    if (this.done || this.cancelled) return;
    if (this.streaming) this.streamStep();
    else this.respond();
  }

  /** Stops everything this exchange started; `close()` calls it before cutting the sockets. */
  cancel(): void {
    this.cancelled = true;
    this.endedByMock = true;
    this.clearTimer();
  }

  settle(): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.res.removeListener('drain', onResponseDrain);
    this.req.removeListener('data', onRequestData);
    this.req.removeListener('end', onRequestEnd);
    const record = this.record;
    record.completed = this.res.writableFinished;
    record.aborted = !record.completed && !this.endedByMock;
    record.settled = true;
    this.owner.onSettled(this);
  }

  /** Writes content chunks until a delay, backpressure, an interruption or the end of the stream. */
  streamStep(): void {
    const behaviour = this.behaviour ?? PLAIN;
    while (!this.done && !this.cancelled) {
      if (this.sent === behaviour.resetAfterChunks) {
        this.endedByMock = true;
        const socket = this.req.socket;
        socket.end(); // flushes what was written, then the socket goes
        if (socket.writableFinished) socket.destroy();
        else socket.once('finish', destroyThisSocket);
        return;
      }
      if (this.sent === behaviour.errorFrameAfterChunks) {
        this.res.end(STREAM_ERROR_FRAME);
        return;
      }
      if (this.sent === behaviour.stallAfterChunks && !this.stalled) {
        this.stalled = true;
        if (behaviour.stallMs >= 0) this.schedule(behaviour.stallMs);
        return; // a stall without end waits for the client to leave or close()
      }
      if (this.sent === behaviour.chunks) {
        this.res.end(this.streamTail(behaviour));
        return;
      }
      if (behaviour.chunkDelayMs > 0 && !this.delayElapsed) {
        this.delayElapsed = true;
        this.schedule(behaviour.chunkDelayMs);
        return;
      }
      this.delayElapsed = false;
      const flushed = this.res.write(this.contentFrame(behaviour, this.sent));
      this.sent++;
      if (!flushed) {
        this.res.once('drain', onResponseDrain);
        return;
      }
    }
  }

  private overflow(): void {
    this.overflowed = true;
    this.bodyChunks = [];
    this.owner.emitRecord('request', this.record);
    const body = errorJson(
      `mock upstream: request body exceeds ${this.owner.maxBodyBytes} bytes`,
      'invalid_request_error',
      'body_too_large',
    );
    const headers = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    };
    this.res.writeHead(413, headers);
    this.res.end(body);
  }

  private schedule(delayMs: number): void {
    // Deliberately not unref'd: it lives only while the request's socket (which holds the loop) is open,
    // and a ref'd timer shows up in process.getActiveResourcesInfo() for leak checks.
    this.timer = setTimeout(onExchangeTimer, delayMs, this);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private respond(): void {
    const behaviour = this.behaviour ?? PLAIN;
    if (behaviour.resetBeforeHeaders) {
      this.endedByMock = true;
      this.req.socket.resetAndDestroy();
      return;
    }
    if (this.behaviourError !== undefined) {
      const message = `mock upstream: behaviour factory threw: ${this.behaviourError}`;
      this.sendJson(500, errorJson(message, 'server_error', 'mock_behaviour_error'));
      return;
    }
    if (behaviour.scriptedBody !== undefined) {
      this.sendJson(behaviour.status, behaviour.scriptedBody);
      return;
    }
    if (this.invalidJson) {
      this.sendJson(
        400,
        errorJson('mock upstream: request body is not valid JSON', 'invalid_request_error', 'invalid_json'),
      );
      return;
    }
    const { method, path } = this.record;
    const query = path.indexOf('?');
    const pathname = query === -1 ? path : path.slice(0, query);
    if (method === 'POST') {
      if (pathname === '/v1/chat/completions') return this.completion(behaviour, 'chat');
      if (pathname === '/v1/completions') return this.completion(behaviour, 'text');
      if (pathname === '/v1/embeddings') return this.embeddings(behaviour);
    } else if (method === 'GET' && pathname === '/v1/models') {
      return this.sendJson(200, MODELS_BODY);
    }
    this.sendJson(
      404,
      errorJson(`Unknown request URL: ${method} ${pathname}`, 'invalid_request_error', 'unknown_url'),
    );
  }

  private headersFor(contentType: string): OutgoingHttpHeaders {
    const behaviour = this.behaviour ?? PLAIN;
    const headers: OutgoingHttpHeaders = { 'content-type': contentType };
    if (behaviour.retryAfter !== undefined) headers['retry-after'] = behaviour.retryAfter;
    for (const [name, value] of behaviour.extraHeaders) headers[name] = value;
    return headers;
  }

  private sendJson(status: number, body: string): void {
    const headers = this.headersFor('application/json');
    headers['content-length'] ??= Buffer.byteLength(body); // writeHead alone would make it chunked
    this.res.writeHead(status, headers);
    this.res.end(body);
  }

  private chunkText(behaviour: ResolvedBehaviour, index: number): string {
    return behaviour.word === undefined ? `tok${index} ` : `${behaviour.word} `;
  }

  private usage(completionTokens: number): {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens: number;
  } {
    const prompt = this.promptTokenCount;
    return {
      prompt_tokens: prompt,
      completion_tokens: completionTokens,
      total_tokens: prompt + completionTokens,
    };
  }

  private completion(behaviour: ResolvedBehaviour, kind: CompletionKind): void {
    const body = this.record.body;
    const model = modelOf(body, 'mock-model');
    const created = Math.floor(Date.now() / 1000);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-mock-${this.record.seq}`;
    this.kind = kind;
    this.promptTokenCount = promptTokens(body, kind);
    this.completionTokens = behaviour.chunks;
    if (fieldOf(body, 'stream') === true) {
      const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      this.envelope = `{"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(model)},"choices":[`;
      this.includeUsage =
        fieldOf(fieldOf(body, 'stream_options'), 'include_usage') === true && !behaviour.omitUsage;
      this.usageNull = this.includeUsage ? ',"usage":null' : '';
      this.streaming = true;
      const headers = this.headersFor('text/event-stream');
      headers['cache-control'] ??= 'no-cache';
      this.res.writeHead(behaviour.status, headers);
      this.res.flushHeaders();
      this.streamStep();
      return;
    }
    let content = '';
    for (let i = 0; i < behaviour.chunks; i++) content += this.chunkText(behaviour, i);
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
    if (!behaviour.omitUsage) response.usage = this.usage(behaviour.chunks);
    this.sendJson(behaviour.status, JSON.stringify(response));
  }

  private contentFrame(behaviour: ResolvedBehaviour, index: number): string {
    const text = behaviour.wordJson ?? `"tok${index} "`;
    if (this.kind === 'text') {
      return `data: ${this.envelope}{"text":${text},"index":0,"logprobs":null,"finish_reason":null}]${this.usageNull}}\n\n`;
    }
    const role = index === 0 ? '"role":"assistant",' : '';
    return `data: ${this.envelope}{"index":0,"delta":{${role}"content":${text}},"finish_reason":null}]${this.usageNull}}\n\n`;
  }

  private streamTail(behaviour: ResolvedBehaviour): string {
    let tail =
      this.kind === 'text'
        ? `data: ${this.envelope}{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]${this.usageNull}}\n\n`
        : `data: ${this.envelope}{"index":0,"delta":{},"finish_reason":"stop"}]${this.usageNull}}\n\n`;
    if (this.includeUsage)
      tail += `data: ${this.envelope}],"usage":${JSON.stringify(this.usage(this.completionTokens))}}\n\n`;
    if (!behaviour.omitDone) tail += DONE_FRAME;
    return tail;
  }

  private embeddings(behaviour: ResolvedBehaviour): void {
    const body = this.record.body;
    const input = fieldOf(body, 'input');
    const seeds: string[] = [];
    let words = 0;
    if (typeof input === 'string') {
      seeds.push(input);
      words = countWords(input);
    } else if (Array.isArray(input) && input.length > 0 && input.every((item) => typeof item === 'number')) {
      seeds.push(input.join(','));
      words = input.length;
    } else if (Array.isArray(input)) {
      for (const item of input) {
        if (typeof item === 'string') {
          seeds.push(item);
          words += countWords(item);
        } else {
          seeds.push(Array.isArray(item) ? item.join(',') : String(item));
          words += Array.isArray(item) ? item.length : 1;
        }
      }
    }
    if (seeds.length === 0) seeds.push('');
    const data = seeds.map((seed, index) => ({ object: 'embedding', index, embedding: embeddingOf(seed) }));
    const response: Record<string, unknown> = {
      object: 'list',
      data,
      model: modelOf(body, 'mock-embedding'),
    };
    const prompt = Math.max(words, 1);
    if (!behaviour.omitUsage) response.usage = { prompt_tokens: prompt, total_tokens: prompt };
    this.sendJson(behaviour.status, JSON.stringify(response));
  }
}

/** The server behind {@link MockUpstream}; one instance per `createMockUpstream` call, nothing shared. */
class MockUpstreamServer implements MockUpstream {
  readonly maxBodyBytes: number;
  private readonly config: ResolvedOptions;
  private readonly server: Server<typeof MockRequest>;
  private readonly emitter = new EventEmitter();
  private readonly queue: ResolvedBehaviour[] = [];
  private defaultBehaviour: ResolvedBehaviour | MockBehaviourFactory | undefined = undefined;
  private readonly ring: MutableRecord[] = [];
  private ringStart = 0;
  private seq = 0;
  private generation = 0;
  private settledCount = 0;
  private readonly active = new Set<Exchange>();
  private readonly waiters = new Set<SettledWaiter>();
  private sockets = 0;
  private onAllSocketsClosed: (() => void) | undefined = undefined;
  private boundPort = 0;
  private closing: Promise<void> | undefined = undefined;

  constructor(config: ResolvedOptions) {
    this.config = config;
    this.maxBodyBytes = config.maxBodyBytes;
    this.server = createServer(
      { IncomingMessage: MockRequest, keepAliveTimeout: config.keepAliveTimeoutMs },
      this.onRequest,
    );
    this.server.keepAliveTimeout = config.keepAliveTimeoutMs;
    this.server.on('connection', this.onConnection);
  }

  get url(): string {
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    return `http://${host}:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  get requests(): readonly RecordedRequest[] {
    return this.ring.slice(this.ringStart).concat(this.ring.slice(0, this.ringStart));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', reject);
        this.boundPort = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  enqueue(...behaviours: MockBehaviour[]): void {
    const resolved = behaviours.map(resolveBehaviour); // validate all before queueing any
    for (const behaviour of resolved) this.queue.push(behaviour);
  }

  setBehaviour(behaviour: MockBehaviour | MockBehaviourFactory | undefined): void {
    this.defaultBehaviour =
      behaviour === undefined || typeof behaviour === 'function' ? behaviour : resolveBehaviour(behaviour);
  }

  pendingBehaviours(): number {
    return this.queue.length;
  }

  reset(): void {
    this.queue.length = 0;
    this.defaultBehaviour = undefined;
    this.ring.length = 0;
    this.ringStart = 0;
    this.seq = 0;
    this.settledCount = 0;
    this.generation++;
  }

  on(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this {
    this.emitter.on(event, listener);
    return this;
  }

  off(event: MockUpstreamEvent, listener: (request: RecordedRequest) => void): this {
    this.emitter.off(event, listener);
    return this;
  }

  waitForSettled(count: number, timeoutMs: number = DEFAULT_WAIT_TIMEOUT_MS): Promise<RecordedRequest[]> {
    try {
      integerIn('waitForSettled', 'count', count, 0, 0, Number.MAX_SAFE_INTEGER);
      integerIn('waitForSettled', 'timeoutMs', timeoutMs, 0, 1, 2 ** 31 - 1);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (this.settledCount >= count) return Promise.resolve(this.settledRecords());
    if (this.closing !== undefined) return Promise.reject(this.closedError(count));
    return new Promise((resolve, reject) => {
      const waiter: SettledWaiter = { count, resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `waitForSettled: ${this.settledCount} of ${count} requests settled within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  openConnections(): number {
    return this.sockets;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** The next queued behaviour, if any (POST requests only, in arrival order). */
  takeQueued(): ResolvedBehaviour | undefined {
    return this.queue.shift();
  }

  defaultBehaviourFor(record: RecordedRequest): ResolvedBehaviour {
    const behaviour = this.defaultBehaviour;
    if (behaviour === undefined) return PLAIN;
    return typeof behaviour === 'function' ? resolveBehaviour(behaviour(record)) : behaviour;
  }

  emitRecord(event: MockUpstreamEvent, record: RecordedRequest): void {
    this.emitter.emit(event, record);
  }

  onSettled(exchange: Exchange): void {
    this.active.delete(exchange);
    if (exchange.generation === this.generation) {
      this.settledCount++;
      if (this.waiters.size > 0) this.wakeWaiters();
    }
    this.emitter.emit('settled', exchange.record);
  }

  private readonly onRequest = (req: MockRequest, res: ServerResponse<MockRequest>): void => {
    this.seq++;
    const exchange = new Exchange(this, req, res, this.seq, this.generation);
    this.remember(exchange.record);
    this.active.add(exchange);
    exchange.start();
  };

  private readonly onConnection = (socket: Socket): void => {
    this.sockets++;
    socket.once('close', this.onSocketClose);
  };

  private readonly onSocketClose = (): void => {
    this.sockets--;
    if (this.sockets === 0) this.onAllSocketsClosed?.();
  };

  private remember(record: MutableRecord): void {
    const capacity = this.config.maxRecorded;
    if (capacity === 0) return;
    if (this.ring.length < capacity) {
      this.ring.push(record);
      return;
    }
    this.ring[this.ringStart] = record;
    this.ringStart = this.ringStart + 1 === capacity ? 0 : this.ringStart + 1;
  }

  private settledRecords(): RecordedRequest[] {
    return this.requests.filter((record) => record.settled);
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters) {
      if (this.settledCount < waiter.count) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve(this.settledRecords());
    }
  }

  private closedError(count: number): Error {
    return new Error(
      `waitForSettled: the mock upstream closed with ${this.settledCount} of ${count} requests settled`,
    );
  }

  private async shutdown(): Promise<void> {
    for (const exchange of this.active) exchange.cancel();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    // The server may report 'close' before the sockets' own 'close' events ran; wait for them too.
    if (this.sockets > 0) await new Promise<void>((resolve) => (this.onAllSocketsClosed = resolve));
    this.onAllSocketsClosed = undefined;
    for (const exchange of this.active) exchange.settle(); // in case a socket's 'close' has not reached it yet
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(this.closedError(waiter.count));
    }
    this.waiters.clear();
  }
}

/**
 * Starts a real OpenAI-compatible HTTP server on a free loopback port, for tests and benchmarks.
 *
 * Routes: `POST /v1/chat/completions` and `POST /v1/completions` (JSON, or SSE when `"stream": true`),
 * `POST /v1/embeddings`, `GET /v1/models`; anything else is a 404 in the OpenAI error shape. Every POST request
 * takes the next {@link MockBehaviour} from `enqueue(...)`, else the one from `setBehaviour(...)`, else the plain
 * default (3 chunks `tok0 tok1 tok2 `). Token counts are deterministic: `prompt_tokens` is the number of words in
 * the string message contents (at least 1) and `completion_tokens` the number of chunks.
 *
 * @example
 * ```ts
 * const upstream = await createMockUpstream();
 * upstream.enqueue({ status: 429, retryAfter: '1' }, { chunks: 5, chunkDelayMs: 10 });
 * // … point the relay at `${upstream.url}/v1` and send two requests …
 * const [limited, streamed] = await upstream.waitForSettled(2);
 * await upstream.close();
 * ```
 */
export async function createMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const mock = new MockUpstreamServer(resolveOptions(options));
  await mock.listen();
  return mock;
}
