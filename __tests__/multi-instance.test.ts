import { afterAll, beforeAll, expect, it } from '@jest/globals';
import express from 'express';
import { Redis } from 'ioredis';
import net from 'node:net';
import request from 'supertest';
import {
  bodyLimit,
  hashApiKey,
  keyAuth,
  Pricing,
  streamRelay,
  type KeyAuth,
  type StreamRelay,
} from '../lib/index.js';
import { RedisKeyStore } from '../lib/redis.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { chat, waitFor } from './support/http.js';
import { requireRedis } from './support/redis.js';

// First, before any client: one clear failure when Redis is down, or visibly skipped suites
// under LLMUX_SKIP_REDIS=1 (see support/redis.ts).
const redis = await requireRedis();
const { describe } = redis;

const SECRET = 'sk-llmux-multi-instance-0001';
const PREFIX = `llmux-test:multi:${process.pid}:${Date.now()}:`;
/** $1 per completion token, free prompts: a request capped at 3 tokens costs exactly $3. */
const pricing = new Pricing({ priced: { inputPerMTokUsd: 0, outputPerMTokUsd: 1_000_000 } });
/** A chat completion of the priced model, capped at 3 completion tokens ($3). */
const pricedChat = chat({ model: 'priced', max_tokens: 3 });

/** A TCP hop in front of Redis that a test can cut and restore, as a network fault would. */
class CuttableProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(redis.port, redis.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async cut(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

describe('two app instances sharing one Redis', () => {
  let mock: MockUpstream;
  let admin: Redis;
  const relays: StreamRelay[] = [];
  const stores: RedisKeyStore[] = [];
  const auths: KeyAuth[] = [];

  beforeAll(async () => {
    mock = await createMockUpstream({ maxRecorded: 0 });
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    await Promise.all(relays.map((relay) => relay.close()));
    // Settlements land (or give up, bounded) before their stores close: none is left retrying
    // into the next test file.
    await Promise.all(auths.map((auth) => auth.close()));
    await Promise.all(stores.map((store) => store.close()));
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 500);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    admin.disconnect();
    await mock.close();
  });

  function instance(
    prefix: string,
    options: { port?: number; onStoreError?: 'fail-closed' | 'fail-open'; clock?: () => number } = {},
  ) {
    const store = new RedisKeyStore({
      url: options.port === undefined ? redis.url : `redis://127.0.0.1:${options.port}`,
      prefix,
      onStoreError: options.onStoreError,
      // Short where the test cuts Redis off; elsewhere long enough for a loaded machine, where 50
      // parallel admissions on two cores can take longer than 300 ms (all refused 503 then).
      commandTimeoutMs: options.port === undefined ? 5_000 : 300,
    });
    stores.push(store);
    const relay = streamRelay({ upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } });
    relays.push(relay);
    const auth = keyAuth({ store, pricing, clock: options.clock, limitFailedAuth: false });
    auths.push(auth);
    const app = express();
    app.post('/v1/chat/completions', bodyLimit(), auth, relay);
    return { app, store };
  }

  it('holds a budget for 10 requests across both under 50 parallel requests', async () => {
    const prefix = `${PREFIX}budget:`;
    const one = instance(prefix);
    const two = instance(prefix);
    const key = await one.store.createKey({
      name: 'shared',
      hash: hashApiKey(SECRET),
      prefix: 'sk-llmux-mult',
      budgetUsd: 30,
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        request(i % 2 === 0 ? one.app : two.app)
          .post('/v1/chat/completions')
          .set('x-api-key', SECRET)
          .send(pricedChat),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(10);
    expect(
      results.filter((r) => r.status === 429).every((r) => r.body.error.code === 'insufficient_quota'),
    ).toBe(true);
    // The bills land in Redis after the responses closed; the store has no event for it.
    await waitFor(async () => (await two.store.getKey(key.id))!.spendUsd >= 30 - 1e-9, {
      what: 'every bill to land in Redis',
      timeoutMs: 3_000,
    });
    expect((await two.store.getKey(key.id))!.spendUsd).toBeCloseTo(30, 9);
  });

  it('admits an rpm of 20 across both in one window', async () => {
    const prefix = `${PREFIX}rpm:`;
    const now = Date.parse('2026-11-22T12:00:00Z');
    const one = instance(prefix, { clock: () => now });
    const two = instance(prefix, { clock: () => now });
    await one.store.createKey({ name: 'rpm', hash: hashApiKey(SECRET), prefix: 'sk-llmux-mult', rpm: 20 });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        request(i % 2 === 0 ? one.app : two.app)
          .post('/v1/chat/completions')
          .set('x-api-key', SECRET)
          .send(pricedChat),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(20);
    expect(results.filter((r) => r.status === 429)).toHaveLength(20);
  });

  it.each([
    ['fail-closed', 503],
    ['fail-open', 200],
  ] as ['fail-closed' | 'fail-open', number][])(
    'answers as %s while Redis is unreachable, and resumes when it is back',
    async (mode, whileDown) => {
      const prefix = `${PREFIX}outage-${mode}:`;
      const proxy = new CuttableProxy();
      await proxy.start();
      const { app, store } = instance(prefix, { port: proxy.port, onStoreError: mode });
      await store.createKey({ name: 'outage', hash: hashApiKey(SECRET), prefix: 'sk-llmux-mult' });
      const send = () => request(app).post('/v1/chat/completions').set('x-api-key', SECRET).send(pricedChat);
      expect((await send()).status).toBe(200);

      await proxy.cut();
      const down = await send();
      expect(down.status).toBe(whileDown);
      if (whileDown === 503) {
        expect(down.body.error.code).toBe('store_unavailable');
        expect(down.headers['retry-after']).toBeDefined();
      }

      await proxy.start();
      // The store reconnects by itself, with a backoff: bounded, as the old loop of 100 × 50 ms was.
      await waitFor(async () => (await send()).status === 200, {
        what: 'service back',
        timeoutMs: 5_000,
        intervalMs: 50,
      });
      await proxy.cut();
    },
  );
});
