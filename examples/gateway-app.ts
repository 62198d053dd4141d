// The example gateway as a function, so tests run exactly what `npm start` runs: the llmux preset
// with a key store, the management API under /admin, in front of the mock or a real upstream.
import express from 'express';
import type { Server } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  createMetrics,
  createServer,
  hashApiKey,
  healthRouter,
  JsonlFileSink,
  llmux,
  managementRouter,
  MemoryKeyStore,
  metricsHandler,
  RequestTracker,
  retry,
  sendError,
  errors,
  trackerRouter,
  upstreamPool,
  type Closable,
  type KeyStore,
  type LlmuxRouter,
} from '../lib/index.js';
import type { RedisKeyStore } from '../lib/redis.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

/** What the example reads from its environment. */
export interface GatewayConfig {
  /** A real OpenAI-compatible base URL; the built-in mock when absent. */
  upstreamUrl?: string;
  /** The relay's own keys for that upstream. */
  upstreamKeys: string[];
  /** The key clients send. */
  demoKey: string;
  /** Guards /admin; the management API is not mounted without it. */
  adminKey?: string;
  /** Delay between the mock's stream chunks, so a terminal shows them arriving. */
  mockChunkDelayMs?: number;
  /** Where usage records are appended as JSON lines; none when absent. */
  usageLogPath?: string;
  /** Keys, budgets and limits in this Redis (shared by every instance); in memory when absent. */
  redisUrl?: string;
}

/** A built gateway: its server (not listening yet), its store, and what to close on shutdown. */
export interface Gateway {
  server: Server;
  store: KeyStore;
  /** Closed before the server drains: live feeds never end by themselves. */
  beforeDrain: Closable[];
  closables: Closable[];
  upstreamLabel: string;
  /** The mounted preset: its `pieces.auth.whenSettled()` tells when every bill reached the store. */
  router: LlmuxRouter;
  /** The request tracker: `whenRecorded()` tells when every request so far has settled. */
  tracker: RequestTracker;
  /** The built-in mock upstream, when no `upstreamUrl` was given (tests script its answers). */
  mock: MockUpstream | undefined;
}

/**
 * A start-up failure the user can fix (a port in use, a Redis that does not answer): the example
 * prints its message as one line, without a stack.
 */
export class GatewayStartError extends Error {
  override readonly name = 'GatewayStartError';
}

/** Reads {@link GatewayConfig} from environment variables. */
export function configFromEnv(env: NodeJS.ProcessEnv): GatewayConfig {
  return {
    upstreamUrl: env.LLMUX_UPSTREAM_URL || undefined,
    upstreamKeys: (env.LLMUX_UPSTREAM_KEYS ?? '')
      .split(',')
      .map((key) => key.trim())
      .filter((key) => key.length > 0),
    demoKey: env.LLMUX_DEMO_KEY || 'sk-llmux-demo',
    adminKey: env.LLMUX_ADMIN_KEY || undefined,
    usageLogPath: env.LLMUX_USAGE_LOG ?? 'llmux-usage.jsonl',
    redisUrl: env.REDIS_URL || undefined,
  };
}

/** Builds the example gateway. */
export async function buildGateway(config: GatewayConfig): Promise<Gateway> {
  // First, so a Redis that does not answer stops the start before anything else is opened.
  const store = await keyStore(config);
  const closables: Closable[] = [];
  let url: string;
  let keys: (string | undefined)[];
  let mock: MockUpstream | undefined;
  if (config.upstreamUrl) {
    url = config.upstreamUrl;
    keys = config.upstreamKeys.length > 0 ? config.upstreamKeys : [undefined];
  } else {
    mock = await createMockUpstream();
    if (config.mockChunkDelayMs) mock.setBehaviour({ chunks: 12, chunkDelayMs: config.mockChunkDelayMs });
    closables.push(mock);
    url = `${mock.url}/v1`;
    keys = ['sk-mock-upstream-1', 'sk-mock-upstream-2'];
  }
  // Every upstream key is a pool member: a rate-limited or revoked key cools down or is
  // disabled while the others carry on, and a retry goes to another key.
  const upstream = upstreamPool({
    upstreams: keys.map((apiKey, i) => ({ url, apiKey, name: `upstream-${i + 1}` })),
    strategy: 'least-connections',
  });

  if ((await store.getKey('demo')) === undefined) {
    await store.createKey({
      id: 'demo',
      name: 'demo',
      hash: hashApiKey(config.demoKey),
      prefix: config.demoKey.slice(0, 13),
    });
  }

  const sink = config.usageLogPath ? new JsonlFileSink({ path: config.usageLogPath }) : undefined;
  const tracker = new RequestTracker({ capacity: 1000, sink });
  const metrics = createMetrics();
  const gateway = llmux({
    upstream,
    auth: { store },
    gate: { max: 256, maxQueue: 1024, queueTimeoutMs: 30_000 },
    relay: { retry: retry({ attempts: 3 }) },
    metrics,
    tracker,
  });
  const dashboard = trackerRouter(tracker);

  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', metricsHandler(metrics.registry));
  app.use(
    healthRouter({
      pool: upstream,
      stores: [{ name: 'keys', ping: async () => void (await store.getKey('demo')) }],
    }),
  );
  if (config.adminKey) {
    app.use('/admin', managementRouter({ store, adminKey: config.adminKey }));
    app.use('/llmux', adminOnly(config.adminKey), dashboard);
  } else {
    app.use('/llmux', dashboard);
  }
  app.use(gateway);
  // Shutdown order: (the live feed first, see `beforeDrain`) the gateway, then the usage log.
  closables.unshift(gateway, store, metrics);
  if (sink) closables.push(sink);
  return {
    server: createServer(app),
    store,
    beforeDrain: [dashboard],
    closables,
    upstreamLabel: config.upstreamUrl ?? 'the built-in mock upstream',
    router: gateway,
    tracker,
    mock,
  };
}

/** How long a start waits for the Redis named by `REDIS_URL` to answer a PING. */
const REDIS_START_WAIT_MS = 3_000;

/**
 * Redis when `REDIS_URL` is set (loaded only then), the memory store otherwise. A Redis that does
 * not answer within {@link REDIS_START_WAIT_MS} is a {@link GatewayStartError}: a gateway that
 * started anyway would refuse every request with 503 `store_unavailable`.
 */
async function keyStore(config: GatewayConfig): Promise<KeyStore> {
  if (!config.redisUrl) return new MemoryKeyStore();
  const redis = await import('../lib/redis.js');
  let store: RedisKeyStore;
  try {
    store = new redis.RedisKeyStore({ url: config.redisUrl, prefix: 'llmux-example:' });
  } catch (err) {
    throw new GatewayStartError(`REDIS_URL: ${(err as Error).message}`);
  }
  const deadline = performance.now() + REDIS_START_WAIT_MS;
  for (;;) {
    try {
      await store.ping();
      return store;
    } catch (err) {
      if (performance.now() >= deadline) {
        await store.close();
        throw new GatewayStartError(
          `REDIS_URL is set but Redis at ${withoutPassword(config.redisUrl)} does not answer ` +
            `(${(err as Error).message}): start it, or unset REDIS_URL to keep keys in memory`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** `redis://:secret@host:6379` → `redis://:***@host:6379`, for messages. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.href;
  } catch {
    return '(an unparsable URL)';
  }
}

/** Guards the dashboard with the admin key (constant-time compare of SHA-256 digests). */
function adminOnly(adminKey: string): express.RequestHandler {
  const expected = createHash('sha256').update(adminKey).digest();
  return (req, res, next) => {
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
    const digest = createHash('sha256').update(presented).digest();
    if (timingSafeEqual(digest, expected)) next();
    else sendError(res, errors.invalidApiKey());
  };
}
