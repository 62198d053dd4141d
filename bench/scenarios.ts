// The relay scenarios of the benchmarks (S1, S1u, S1e, S2, S3, S4 and its retry and gate-saturation
// variants S4r, S4g), each a plain request handler in front of an upstream URL, sized for a number of
// requests in flight. bench/relay-server.ts serves one per child process; bench/soak-server.ts serves S4.
import express from 'express';
import http from 'node:http';
import { pipeline } from 'node:stream';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { Pool } from 'undici';
import type { RequestTracker, RetryPolicy } from '../lib/index.js';
import { lib } from './llmux.js';
import { BENCH_KEY } from './relay-config.js';

const { bodyLimit, CallbackSink, createMetrics, llmux, MemoryKeyStore, retry, streamRelay } = lib;

/** Gate limit of S4: above the highest offered concurrency (128). */
const GATE_MAX = 256;
/** Upstream sockets of S1, S1u, S1e and S2 (their agents' maxSockets): the highest offered concurrency. */
const UPSTREAM_SOCKETS = 128;
/** Gate limit of S4g, driven at twice it; the gate's default queue (2 x max) holds the excess. */
export const SATURATED_GATE_MAX = 16;
/**
 * Retry policy of S4r, whose upstream fails every first attempt: no backoff beyond the upstream's
 * `Retry-After: 0` (so the wait is one zero-delay timer, about 1 ms), and a budget that lets every
 * request retry once: the default ratio 0.2 would refuse most retries of this all-failing workload,
 * and exactly 1 refuses some at window edges, where requests counted in one window retry in the next.
 */
export const RETRY_OPTIONS = { attempts: 2, baseDelayMs: 0, maxDelayMs: 0, budget: { ratio: 2 } } as const;
export const KEEP_ALIVE_MS = 60_000;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade']);

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Pending connections a server's accept queue holds (Linux caps it at net.core.somaxconn). Node's
 * default, 511, overflows when thousands of streams open within a second while the event loop is
 * busy: the kernel then drops the handshake and the client retries a second or more later.
 */
const LISTEN_BACKLOG = 4_096;

export function listen(handler: Handler): Promise<http.Server> {
  const server = http.createServer(handler);
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  return new Promise((resolve) =>
    server.listen({ port: 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG }, () => resolve(server)),
  );
}

function fail(res: http.ServerResponse, err: unknown): void {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end(String(err));
}

/**
 * Builds a scenario in front of `upstream`. `capacity` is the number of requests it must hold in flight
 * at once (bench/streams.ts: thousands of open streams): every upstream socket limit and S4's gate are
 * set to it. Without it, the sizes of bench/relay.ts (128 sockets, gate of 256).
 */
export type ScenarioFactory = (upstream: string, capacity?: number) => Handler;

function rawHttp(upstream: string, capacity = UPSTREAM_SOCKETS): Handler {
  const target = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: capacity });
  return (req, res) => {
    const out = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', (err) => fail(res, err));
    req.pipe(out);
  };
}

function undiciPool(upstream: string, capacity = UPSTREAM_SOCKETS): Handler {
  const pool = new Pool(upstream, { connections: capacity, keepAliveTimeout: KEEP_ALIVE_MS });
  return (req, res) => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    }
    pool
      .request({ method: req.method as 'POST', path: req.url ?? '/', headers, body: req })
      .then((up) => {
        const out: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(up.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
        }
        res.writeHead(up.statusCode, out);
        pipeline(up.body, res, () => {});
      })
      .catch((err: unknown) => fail(res, err));
  };
}

function bareProxy(upstream: string, capacity = UPSTREAM_SOCKETS): Handler {
  const app = express();
  const agent = new http.Agent({ keepAlive: true, maxSockets: capacity });
  app.use(createProxyMiddleware({ target: upstream, agent }));
  return app;
}

/** S1e: S1u's pipe as an Express route: the floor of any relay that lives in an Express app. */
function undiciPoolInExpress(upstream: string, capacity?: number): Handler {
  const app = express();
  app.post('/v1/chat/completions', undiciPool(upstream, capacity));
  return app;
}

function relayAlone(upstream: string, capacity?: number): Handler {
  const app = express();
  const clients = capacity === undefined ? {} : { connectionsPerOrigin: capacity };
  app.post('/v1/chat/completions', bodyLimit(), streamRelay({ upstream: `${upstream}/v1`, clients }));
  return app;
}

/**
 * What S4 can be varied by: the tracker (the soak reads its size), the gate's limit, the upstream
 * sockets, the retry policy.
 */
export interface FullPresetOptions {
  tracker?: RequestTracker;
  gateMax?: number;
  /** The relay's `clients.connectionsPerOrigin`. Default: the library's (256). */
  connectionsPerOrigin?: number;
  /** Default `retry({ attempts: 2 })`: armed, not triggered by a healthy upstream. */
  retry?: RetryPolicy;
}

export function fullPreset(upstream: string, options: FullPresetOptions = {}): Handler {
  const store = new MemoryKeyStore({ seed: { keys: [{ id: 'bench', name: 'bench', key: BENCH_KEY }] } });
  const app = express();
  app.use(
    llmux({
      upstream: `${upstream}/v1`,
      auth: { store },
      gate: { max: options.gateMax ?? GATE_MAX },
      relay: {
        retry: options.retry ?? retry({ attempts: 2 }),
        ...(options.connectionsPerOrigin === undefined
          ? {}
          : { clients: { connectionsPerOrigin: options.connectionsPerOrigin } }),
      },
      metrics: createMetrics(),
      tracker: options.tracker ?? new lib.RequestTracker({ sink: new CallbackSink(() => {}) }),
    }),
  );
  return app;
}

/** S4 sized for `capacity` requests in flight: its gate and its upstream sockets. */
function sizedPreset(upstream: string, capacity?: number): Handler {
  return capacity === undefined
    ? fullPreset(upstream)
    : fullPreset(upstream, { gateMax: capacity, connectionsPerOrigin: capacity });
}

export const RELAYS: Record<string, ScenarioFactory> = {
  S1: rawHttp,
  S1u: undiciPool,
  S1e: undiciPoolInExpress,
  S2: bareProxy,
  S3: relayAlone,
  S4: sizedPreset,
  S4r: (upstream) => fullPreset(upstream, { retry: retry(RETRY_OPTIONS) }),
  S4g: (upstream) => fullPreset(upstream, { gateMax: SATURATED_GATE_MAX }),
};
