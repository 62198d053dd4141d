// The example gateway as a function, so tests run exactly what `npm start` runs: the llmux preset
// with a key store, the management API under /admin, in front of the mock or a real upstream.
import express from 'express';
import type { Server } from 'node:http';
import {
  createServer,
  hashApiKey,
  llmux,
  managementRouter,
  MemoryKeyStore,
  retry,
  upstreamPool,
  type Closable,
  type KeyStore,
} from '../lib/index.js';
import { createMockUpstream } from '../lib/testing/index.js';

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
}

/** A built gateway: its server (not listening yet), its store, and what to close on shutdown. */
export interface Gateway {
  server: Server;
  store: KeyStore;
  closables: Closable[];
  upstreamLabel: string;
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
  };
}

/** Builds the example gateway. */
export async function buildGateway(config: GatewayConfig): Promise<Gateway> {
  const closables: Closable[] = [];
  let url: string;
  let keys: (string | undefined)[];
  if (config.upstreamUrl) {
    url = config.upstreamUrl;
    keys = config.upstreamKeys.length > 0 ? config.upstreamKeys : [undefined];
  } else {
    const mock = await createMockUpstream();
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

  const store = new MemoryKeyStore();
  await store.createKey({
    id: 'demo',
    name: 'demo',
    hash: hashApiKey(config.demoKey),
    prefix: config.demoKey.slice(0, 13),
  });

  const gateway = llmux({
    upstream,
    auth: { store },
    gate: { max: 256, maxQueue: 1024, queueTimeoutMs: 30_000 },
    relay: { retry: retry({ attempts: 3 }) },
  });
  const app = express();
  app.disable('x-powered-by');
  if (config.adminKey) app.use('/admin', managementRouter({ store, adminKey: config.adminKey }));
  app.use(gateway);
  closables.unshift(gateway, store);
  return {
    server: createServer(app),
    store,
    closables,
    upstreamLabel: config.upstreamUrl ?? 'the built-in mock upstream',
  };
}
