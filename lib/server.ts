// Hardening of the host's `http.Server` (header, request and keep-alive timeouts, header size) and a
// graceful shutdown that drains in-flight requests, then closes every llmux piece once, in order.
import { OptionReader } from './options.js';
import http from 'node:http';
import { setImmediate as nextLoopTurn } from 'node:timers/promises';
import { inspect } from 'node:util';

/** Options of {@link hardenServer}. Every duration is in milliseconds. */
export interface HardenServerOptions {
  /**
   * Time a client has to send the complete request headers (`server.headersTimeout`). Slow-header
   * clients (slowloris) are answered 408 and cut. Node enforces it on its connection check, so a
   * client can outlive it by up to one `connectionsCheckingInterval` (30 s on a plain
   * `http.createServer`, 1 s with llmux's {@link createServer}). Positive integer.
   * @defaultValue 10_000
   */
  headersTimeoutMs?: number;
  /**
   * Time a client has to send the whole request, headers and body (`server.requestTimeout`). It does
   * not limit the response, so long LLM streams are unaffected. `0` turns it off; otherwise it must
   * be at least `headersTimeoutMs`.
   * @defaultValue 60_000
   */
  requestTimeoutMs?: number;
  /**
   * How long an idle keep-alive connection is kept open after a response (`server.keepAliveTimeout`).
   * It must exceed the idle timeout of any load balancer or proxy in front (60 s on AWS ALB):
   * otherwise the server closes a connection the balancer is about to reuse, and its client gets a
   * 502. Positive integer.
   * @defaultValue 65_000
   */
  keepAliveTimeoutMs?: number;
  /**
   * Largest request head (request line and headers) accepted; larger ones are answered 431. Node
   * reads `server.maxHeaderSize` when a connection opens, so on a server already listening it
   * applies to new connections only. Positive integer.
   * @defaultValue 16_384
   */
  maxHeaderSizeBytes?: number;
  /**
   * Requests served on one keep-alive connection before it is closed (`server.maxRequestsPerSocket`).
   * `0` means unlimited.
   * @defaultValue 0
   */
  maxRequestsPerSocket?: number;
  /**
   * Inactivity after which a socket is destroyed (`server.timeout`), applied to new connections. Off
   * by default because an LLM stream can be silent for a long time while the model thinks; idle
   * keep-alive connections are already bounded by `keepAliveTimeoutMs`. `0` turns it off.
   * @defaultValue 0
   */
  socketIdleTimeoutMs?: number;
}

/**
 * Options of llmux's {@link createServer}: those of {@link hardenServer}, plus one that Node takes at
 * creation only.
 */
export interface CreateServerOptions extends HardenServerOptions {
  /**
   * How often Node checks connections against `headersTimeoutMs` and `requestTimeoutMs`
   * (`connectionsCheckingInterval`). Node's default of 30 s lets a slow-header client live 40 s past
   * a 10 s `headersTimeoutMs`. Positive integer.
   * @defaultValue 1_000
   */
  connectionsCheckingIntervalMs?: number;
}

/** Anything {@link shutdown} closes after the server: stores, sinks, caches, pools. */
export interface Closable {
  /** Releases the resource. May return a promise, which is awaited; may throw or reject. */
  close(): unknown;
}

/** Options of {@link shutdown}. */
export interface ShutdownOptions {
  /**
   * Time in-flight requests get to finish before their connections are force-closed. Closables are
   * not bounded by it: each owns its own timeout. Non-negative integer; `0` force-closes at once.
   * @defaultValue 10_000
   */
  timeoutMs?: number;
}

/** What {@link shutdown} did. */
export interface ShutdownResult {
  /** True when every connection ended on its own before `timeoutMs`. */
  drained: boolean;
  /** Connections still open at `timeoutMs`, which were then force-closed. */
  forcedConnections: number;
  /** What the closables threw or rejected with, in order. */
  errors: unknown[];
}

interface ResolvedHardening {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderSizeBytes: number;
  maxRequestsPerSocket: number;
  socketIdleTimeoutMs: number;
}

// Node declares this field at runtime but @types/node does not.
type ServerWithHeaderSize = http.Server & { maxHeaderSize?: number };

// `Symbol.for` so that two copies of llmux in one process still share one shutdown per server.
const SHUTDOWN = Symbol.for('llmux.server.shutdown');
type ServerWithShutdown = http.Server & { [SHUTDOWN]?: Promise<ShutdownResult> };

// How often shutdown closes the connections that became idle since the last sweep.
const IDLE_SWEEP_INTERVAL_MS = 50;

/** Fills defaults and validates; throws a TypeError naming the bad option. */
function resolveHardening(owner: string, options: HardenServerOptions): ResolvedHardening {
  const read = new OptionReader(owner);
  read.options(options);
  const headersTimeoutMs = read.durationMs('headersTimeoutMs', options.headersTimeoutMs, 10_000);
  const requestTimeoutMs = read.durationMs('requestTimeoutMs', options.requestTimeoutMs, 60_000, 0);
  if (requestTimeoutMs !== 0 && requestTimeoutMs < headersTimeoutMs) {
    read.fail('requestTimeoutMs', `0 or at least headersTimeoutMs (${headersTimeoutMs})`, requestTimeoutMs);
  }
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: read.durationMs('keepAliveTimeoutMs', options.keepAliveTimeoutMs, 65_000),
    maxHeaderSizeBytes: read.positiveInteger('maxHeaderSizeBytes', options.maxHeaderSizeBytes, 16_384),
    maxRequestsPerSocket: read.nonNegativeInteger('maxRequestsPerSocket', options.maxRequestsPerSocket, 0),
    socketIdleTimeoutMs: read.durationMs('socketIdleTimeoutMs', options.socketIdleTimeoutMs, 0, 0),
  };
}

function applyHardening(server: http.Server, config: ResolvedHardening): http.Server {
  server.headersTimeout = config.headersTimeoutMs;
  server.requestTimeout = config.requestTimeoutMs;
  server.keepAliveTimeout = config.keepAliveTimeoutMs;
  (server as ServerWithHeaderSize).maxHeaderSize = config.maxHeaderSizeBytes;
  server.maxRequestsPerSocket = config.maxRequestsPerSocket;
  server.timeout = config.socketIdleTimeoutMs;
  return server;
}

/**
 * Sets header, request and keep-alive timeouts, the header size limit, requests per socket and the
 * socket idle timeout on the host's existing server. Call it before `listen()` where possible:
 * `maxHeaderSizeBytes` and `socketIdleTimeoutMs` apply to connections opened afterwards. Prefer
 * {@link createServer} when llmux may create the server, because Node's connection check (which
 * enforces `headersTimeoutMs`) then runs every second rather than every 30 s.
 *
 * @returns the same server.
 * @throws TypeError when an option is invalid.
 * @example
 * ```ts
 * const server = app.listen(8080);
 * hardenServer(server, { keepAliveTimeoutMs: 75_000 }); // behind a balancer idling 60 s
 * ```
 */
export function hardenServer(server: http.Server, options: HardenServerOptions = {}): http.Server {
  return applyHardening(server, resolveHardening('hardenServer', options));
}

/**
 * `http.createServer` with llmux's hardening. Prefer it to `app.listen()` plus {@link hardenServer}:
 * Node only takes `connectionsCheckingInterval` at creation, and its default of 30 s lets a
 * slow-header client stay connected up to 30 s past `headersTimeoutMs`; the default here is 1 s.
 * The header size limit is also passed at creation, so it holds for every connection.
 *
 * @param handler - The request listener, usually the Express app.
 * @throws TypeError when an option is invalid.
 * @example
 * ```ts
 * const server = createServer(app, { headersTimeoutMs: 10_000 }).listen(8080);
 * process.once('SIGTERM', () => void shutdown(server, [usageSink, keyStore]));
 * ```
 */
export function createServer(handler: http.RequestListener, options: CreateServerOptions = {}): http.Server {
  const owner = 'createServer';
  if (typeof handler !== 'function') {
    throw new TypeError(`${owner}: handler must be a function, got ${inspect(handler)}`);
  }
  const config = resolveHardening(owner, options);
  const connectionsCheckingInterval = new OptionReader(owner).durationMs(
    'connectionsCheckingIntervalMs',
    options.connectionsCheckingIntervalMs,
    1_000,
  );
  const server = http.createServer(
    {
      connectionsCheckingInterval,
      maxHeaderSize: config.maxHeaderSizeBytes,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
    },
    handler,
  );
  return applyHardening(server, config);
}

/** Snapshots and checks the closables: each distinct one once, in first-seen order. */
function resolveClosables(closables: Iterable<Closable>): Closable[] {
  if (typeof (closables as Partial<Iterable<Closable>> | null)?.[Symbol.iterator] !== 'function') {
    throw new TypeError(`shutdown: closables must be an iterable, got ${inspect(closables)}`);
  }
  const distinct = new Set<Closable>();
  let index = 0;
  for (const closable of closables) {
    if (typeof (closable as Partial<Closable> | null)?.close !== 'function') {
      throw new TypeError(
        `shutdown: closables[${index}] must have a close() method, got ${inspect(closable)}`,
      );
    }
    distinct.add(closable);
    index += 1;
  }
  return [...distinct];
}

/**
 * Gracefully stops `server`, then closes `closables`:
 *
 * 1. stops accepting connections (`server.close()`) and closes idle keep-alive connections at once;
 * 2. lets in-flight requests finish; responses that start meanwhile carry `Connection: close`, and
 *    connections are closed as soon as they turn idle;
 * 3. after `timeoutMs`, force-closes what remains (`closeAllConnections()`);
 * 4. closes every distinct closable once, in order, awaiting each; one that throws or rejects is
 *    recorded in `errors` and does not stop the others.
 *
 * Calling it again, or concurrently, on the same server returns the first call's promise (later
 * closables and options are ignored). A server that never listened resolves with `drained: true`.
 * Everything it starts (one unref'd interval, two listeners) is gone when it resolves. Upgraded
 * connections (WebSocket) are not reached by `closeAllConnections()`; they are counted as forced
 * but left to their owner. The promise never rejects.
 *
 * @throws TypeError when `server`, a closable or `timeoutMs` is invalid.
 * @example
 * ```ts
 * process.once('SIGTERM', async () => {
 *   const result = await shutdown(server, [usageSink, keyStore], { timeoutMs: 20_000 });
 *   if (!result.drained) console.warn(`forced ${result.forcedConnections} connections`);
 *   process.exitCode = result.errors.length === 0 ? 0 : 1;
 * });
 * ```
 */
export function shutdown(
  server: http.Server,
  closables: Iterable<Closable>,
  options: ShutdownOptions = {},
): Promise<ShutdownResult> {
  if (typeof server?.close !== 'function' || typeof server.closeAllConnections !== 'function') {
    throw new TypeError(`shutdown: server must be an http.Server, got ${inspect(server)}`);
  }
  const timeoutMs = new OptionReader('shutdown').durationMs('timeoutMs', options.timeoutMs, 10_000, 0);
  const toClose = resolveClosables(closables);
  const tracked = server as ServerWithShutdown;
  tracked[SHUTDOWN] ??= runShutdown(server, toClose, timeoutMs);
  return tracked[SHUTDOWN];
}

async function runShutdown(
  server: http.Server,
  closables: readonly Closable[],
  timeoutMs: number,
): Promise<ShutdownResult> {
  const { drained, forcedConnections } = await drainServer(server, timeoutMs);
  // Destroyed sockets emit 'close' from libuv's close phase, after this turn's immediates: wait two
  // turns so per-request 'close' hooks (tracking, usage) run before the closables shut their sinks.
  await nextLoopTurn();
  await nextLoopTurn();
  const errors: unknown[] = [];
  for (const closable of closables) {
    try {
      await closable.close();
    } catch (error) {
      errors.push(error);
    }
  }
  return { drained, forcedConnections, errors };
}

/** Closes the server and its connections: gracefully until `timeoutMs`, then by force. */
function drainServer(
  server: http.Server,
  timeoutMs: number,
): Promise<Pick<ShutdownResult, 'drained' | 'forcedConnections'>> {
  return new Promise((resolve) => {
    const deadline = performance.now() + timeoutMs;
    let settled = false;

    const settle = (drained: boolean, forcedConnections: number): void => {
      if (settled) return;
      settled = true;
      clearInterval(sweeper);
      server.off('request', markLastResponse);
      server.off('close', onClosed);
      resolve({ drained, forcedConnections });
    };
    const onClosed = (): void => settle(true, 0);
    const forceClose = (): void => {
      clearInterval(sweeper);
      server.getConnections((error, count) => {
        if (settled) return;
        server.closeAllConnections();
        settle(false, error ? 0 : count);
      });
    };
    const sweep = (): void => {
      if (performance.now() >= deadline) forceClose();
      else server.closeIdleConnections();
    };
    // The one timer: closes connections that turned idle since the last sweep, then forces at the
    // deadline. Not started when nothing may wait.
    const sweeper =
      timeoutMs === 0 ? undefined : setInterval(sweep, Math.min(IDLE_SWEEP_INTERVAL_MS, timeoutMs)).unref();

    // Prepended so the flag is set before the app's handler can send headers.
    server.prependListener('request', markLastResponse);
    // 'close' is emitted once the server stopped listening and its last connection ended, also
    // when it never listened (then `close()` only schedules the event).
    server.once('close', onClosed);
    server.close();
    server.closeIdleConnections();
    if (timeoutMs === 0) forceClose();
  });
}

/** A response that starts during shutdown closes its connection once sent. */
function markLastResponse(_request: http.IncomingMessage, response: http.ServerResponse): void {
  response.shouldKeepAlive = false;
}
