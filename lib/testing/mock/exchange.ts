// One request/response pair: reads the body under the size cap, resolves its behaviour, answers
// through the route's protocol (JSON or a timed stream), and settles exactly once.
import type { OutgoingHttpHeaders } from 'node:http';
import { PLAIN, type ResolvedBehaviour } from './behaviour.js';
import type { MockRequest, MockResponse } from './http-classes.js';
import type { MutableRecord } from './recorder.js';
import type { ResponseStore } from './response-store.js';
import type { RouteContext } from './route.js';
import { protocolFor } from './routes.js';
import { SseWriter, type SseScript } from './sse-writer.js';
import type { MockUpstreamEvent, RecordedRequest } from './types.js';

/** What an exchange needs from the server that owns it. */
export interface ExchangeOwner {
  readonly maxBodyBytes: number;
  readonly responses: ResponseStore;
  /** The next queued behaviour (POST requests only, in arrival order). */
  takeQueued(): ResolvedBehaviour | undefined;
  /** The default behaviour; a factory that throws makes this throw. */
  defaultBehaviourFor(record: RecordedRequest): ResolvedBehaviour;
  emitRecord(event: MockUpstreamEvent, record: RecordedRequest): void;
  onSettled(exchange: Exchange): void;
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

function onResponseClose(this: MockResponse): void {
  this.req.exchange?.settle();
}

function onDelayTimer(exchange: Exchange): void {
  exchange.onDelayElapsed();
}

/** One request/response pair; the server keeps it until it settles. */
export class Exchange implements RouteContext {
  readonly pathname: string;
  readonly search: string;
  private resolved: ResolvedBehaviour | undefined;
  private behaviourError: string | undefined = undefined;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  private overflowed = false;
  private invalidJson = false;
  private timer: NodeJS.Timeout | undefined = undefined;
  private writer: SseWriter | undefined = undefined;
  private endedByMock = false;
  private cancelled = false;
  private done = false;

  constructor(
    private readonly owner: ExchangeOwner,
    private readonly req: MockRequest,
    private readonly res: MockResponse,
    readonly record: MutableRecord,
    readonly generation: number,
  ) {
    const path = record.path;
    const query = path.indexOf('?');
    this.pathname = query === -1 ? path : path.slice(0, query);
    this.search = query === -1 ? '' : path.slice(query + 1);
    this.resolved = record.method === 'POST' ? owner.takeQueued() : PLAIN;
  }

  get behaviour(): ResolvedBehaviour {
    return this.resolved ?? PLAIN;
  }

  get responses(): ResponseStore {
    return this.owner.responses;
  }

  /** Starts reading the body; the answer follows from `onEnd`. */
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
    if (this.resolved === undefined) {
      try {
        this.resolved = this.owner.defaultBehaviourFor(this.record);
      } catch (error) {
        this.resolved = PLAIN;
        this.behaviourError = error instanceof Error ? error.message : String(error);
      }
    }
    if (this.done || this.cancelled) return; // a listener or the factory closed the mock
    const delayMs = this.behaviour.delayBeforeHeadersMs;
    // Deliberately not unref'd: it lives only while the request's socket (which holds the loop) is open,
    // and a ref'd timer shows up in process.getActiveResourcesInfo() for leak checks.
    if (delayMs > 0) this.timer = setTimeout(onDelayTimer, delayMs, this);
    else this.respond();
  }

  onDelayElapsed(): void {
    this.timer = undefined;
    if (this.done || this.cancelled) return;
    this.respond();
  }

  /** Stops everything this exchange started; `close()` calls it before cutting the sockets. */
  cancel(): void {
    this.cancelled = true;
    this.endedByMock = true;
    this.stopTimers();
  }

  settle(): void {
    if (this.done) return;
    this.done = true;
    this.stopTimers();
    this.req.removeListener('data', onRequestData);
    this.req.removeListener('end', onRequestEnd);
    const record = this.record;
    record.completed = this.res.writableFinished;
    const endedByMock = this.endedByMock || this.writer?.resetByMock === true;
    record.aborted = !record.completed && !endedByMock;
    record.settled = true;
    this.owner.onSettled(this);
  }

  sendJson(status: number, body: string): void {
    const headers = this.headersFor('application/json');
    headers['content-length'] ??= Buffer.byteLength(body); // writeHead alone would make it chunked
    this.res.writeHead(status, headers);
    this.res.end(body);
  }

  stream(behaviour: ResolvedBehaviour, script: SseScript): void {
    const headers = this.headersFor('text/event-stream');
    headers['cache-control'] ??= 'no-cache';
    this.res.writeHead(behaviour.status, headers);
    this.res.flushHeaders();
    this.writer = new SseWriter(this.res, behaviour, script);
    this.writer.start();
  }

  private overflow(): void {
    this.overflowed = true;
    this.bodyChunks = [];
    this.owner.emitRecord('request', this.record);
    const body = protocolFor(this.pathname).errorBody(
      413,
      `mock upstream: request body exceeds ${this.owner.maxBodyBytes} bytes`,
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

  private stopTimers(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.writer?.stop();
  }

  private respond(): void {
    const behaviour = this.behaviour;
    if (behaviour.resetBeforeHeaders) {
      this.endedByMock = true;
      this.req.socket.resetAndDestroy();
      return;
    }
    const protocol = protocolFor(this.pathname);
    if (this.behaviourError !== undefined) {
      const message = `mock upstream: behaviour factory threw: ${this.behaviourError}`;
      this.sendJson(500, protocol.errorBody(500, message, 'mock_behaviour_error'));
      return;
    }
    if (behaviour.scriptedBody !== undefined) {
      this.sendJson(behaviour.status, behaviour.scriptedBody);
      return;
    }
    if (behaviour.status >= 400) {
      this.sendJson(behaviour.status, protocol.errorBody(behaviour.status, `mock error ${behaviour.status}`));
      return;
    }
    if (this.invalidJson) {
      const message = 'mock upstream: request body is not valid JSON';
      this.sendJson(400, protocol.errorBody(400, message, 'invalid_json'));
      return;
    }
    const { method } = this.record;
    const match = protocol.route(method, this.pathname);
    if (match === undefined) {
      const message = `Unknown request URL: ${method} ${this.pathname}`;
      this.sendJson(404, protocol.errorBody(404, message, 'unknown_url'));
      return;
    }
    match.handler(this, match.id);
  }

  private headersFor(contentType: string): OutgoingHttpHeaders {
    const behaviour = this.behaviour;
    const headers: OutgoingHttpHeaders = { 'content-type': contentType };
    if (behaviour.retryAfter !== undefined) headers['retry-after'] = behaviour.retryAfter;
    for (const [name, value] of behaviour.extraHeaders) headers[name] = value;
    return headers;
  }
}
