// What the acceptance tests share: the example gateway (or a small preset app) on an ephemeral
// loopback port in front of a scriptable mock, keys made through the management API, the spend the
// store settled, and the catalog's prices applied by hand, class by class, to check the bills.
import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildGateway, type Gateway } from '../../examples/gateway-app.js';
import {
  createServer,
  DEFAULT_PRICING,
  llmux,
  managementRouter,
  MemoryKeyStore,
  RequestTracker,
  shutdown,
  type KeyAuthOptions,
  type LlmuxOptions,
  type LlmuxRouter,
  type ModelPrice,
} from '../../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../../lib/testing/index.js';

export const ADMIN_KEY = 'admin-key-for-acceptance-0123456789';

/** A running gateway as a client sees it, with the handles a test needs to script and to wait. */
export interface Running {
  /** `http://127.0.0.1:port`: Anthropic's SDK appends `/v1/messages` to it. */
  origin: string;
  /** `${origin}/v1`: OpenAI's SDKs append their paths to it. */
  v1: string;
  mock: MockUpstream;
  router: LlmuxRouter;
  /** Resolves once every request so far has settled and its bill reached the store. */
  settled(): Promise<void>;
  /** Creates a key through `/admin/keys`; answers its id and plaintext. */
  createKey(body: Record<string, unknown>): Promise<{ id: string; key: string }>;
  /** The key's settled spend, as `GET /admin/keys/:id` shows it. */
  spendOf(id: string): Promise<number>;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function running(
  origin: string,
  mock: MockUpstream,
  router: LlmuxRouter,
  tracker: RequestTracker,
  close: () => Promise<void>,
): Running {
  const admin = async (path: string, method = 'GET', body?: unknown): Promise<Response> =>
    fetch(`${origin}/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  return {
    origin,
    v1: `${origin}/v1`,
    mock,
    router,
    async settled() {
      await tracker.whenRecorded();
      await router.pieces.auth!.whenSettled();
    },
    async createKey(body) {
      const res = await admin('/keys', 'POST', body);
      if (res.status !== 201) throw new Error(`POST /admin/keys: ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string; key: string };
    },
    async spendOf(id) {
      const res = await admin(`/keys/${encodeURIComponent(id)}`);
      if (res.status !== 200) throw new Error(`GET /admin/keys/${id}: ${res.status}`);
      return ((await res.json()) as { spendUsd: number }).spendUsd;
    },
    close,
  };
}

/** The example gateway (`buildGateway`, its built-in mock), listening on an ephemeral loopback port. */
export async function startGateway(): Promise<Running> {
  const gateway: Gateway = await buildGateway({
    upstreamKeys: [],
    demoKey: 'sk-llmux-demo-acceptance',
    adminKey: ADMIN_KEY,
  });
  const origin = await listen(gateway.server);
  return running(origin, gateway.mock!, gateway.router, gateway.tracker, async () => {
    await Promise.all(gateway.beforeDrain.map((piece) => piece.close()));
    await shutdown(gateway.server, gateway.closables, { timeoutMs: 2_000 });
  });
}

/** What a small preset app is built with. */
export interface PresetSetup {
  /** `keyAuth` options but the store, which is a fresh `MemoryKeyStore`. */
  auth?: Omit<KeyAuthOptions, 'store' | 'keys'>;
  gate?: LlmuxOptions['gate'];
  relay?: LlmuxOptions['relay'];
}

/** A small app: the `llmux()` preset over a memory store and a mock of its own, and `/admin`. */
export async function startPreset(setup: PresetSetup = {}): Promise<Running> {
  const mock = await createMockUpstream();
  const store = new MemoryKeyStore();
  const tracker = new RequestTracker({ capacity: 1000 });
  const router = llmux({
    upstream: `${mock.url}/v1`,
    auth: { ...setup.auth, store },
    gate: setup.gate,
    relay: setup.relay,
    tracker,
  });
  const app = express();
  app.use('/admin', managementRouter({ store, adminKey: ADMIN_KEY }));
  app.use(router);
  const server = createServer(app);
  const origin = await listen(server);
  return running(origin, mock, router, tracker, async () => {
    await shutdown(server, [router, store, mock], { timeoutMs: 2_000 });
  });
}

/** The catalog's price of `model`, as a host reads it from `DEFAULT_PRICING`. */
export function catalogPrice(model: string): ModelPrice {
  const price = DEFAULT_PRICING[model];
  if (price === undefined) throw new Error(`${model} is not in the catalog`);
  return price;
}

/** Token counts by class, each counted once: `input` is the uncached, unwritten prompt. */
export interface ClassCounts {
  input: number;
  cached?: number;
  cacheWrite?: number;
  /** Every output token, reasoning included (no catalog model here prices reasoning apart). */
  output: number;
}

/** USD for `counts` on `model`, each class at its catalog rate, worked out by hand. */
export function handPricedUsd(model: string, counts: ClassCounts): number {
  const price = catalogPrice(model);
  const perToken =
    counts.input * price.inputPerMTokUsd +
    (counts.cached ?? 0) * (price.cachedInputPerMTokUsd ?? price.inputPerMTokUsd) +
    (counts.cacheWrite ?? 0) * (price.cacheWritePerMTokUsd ?? price.inputPerMTokUsd) +
    counts.output * price.outputPerMTokUsd;
  return perToken / 1_000_000;
}
