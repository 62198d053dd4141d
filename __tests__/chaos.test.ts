import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createServer,
  hashApiKey,
  llmux,
  MemoryKeyStore,
  retry,
  shutdown,
  upstreamPool,
  type LlmuxRouter,
  type UpstreamPool,
} from '../lib/index.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';

const REQUESTS = Number(process.env.CHAOS_REQUESTS ?? 2_000);
const CONCURRENCY = 32;
const KEY = 'sk-llmux-chaos-key-0001';

/** A small deterministic generator, so a failing run can be replayed with CHAOS_SEED. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Outcome {
  status: number;
  body: string;
  aborted: boolean;
}

describe('chaos: the full preset against a failing upstream and leaving clients', () => {
  const random = rng(Number(process.env.CHAOS_SEED ?? 20261122));
  let a: MockUpstream;
  let b: MockUpstream;
  let pool: UpstreamPool;
  let gateway: LlmuxRouter;
  let server: http.Server;
  let port: number;
  let store: MemoryKeyStore;
  const settles = new Map<string, number>();
  let admitted = 0;
  let baseline: string[];

  const behaviour = (): MockBehaviour => {
    const roll = random();
    if (roll < 0.08) return { status: 429, retryAfter: '0' };
    if (roll < 0.16) return { status: 500 };
    if (roll < 0.22) return { resetBeforeHeaders: true };
    if (roll < 0.28) return { chunks: 6, resetAfterChunks: 2 };
    if (roll < 0.32) return { delayBeforeHeadersMs: 1_500 };
    if (roll < 0.38) return { chunks: 4, omitDone: true };
    return { chunks: 1 + Math.floor(random() * 6) };
  };

  beforeAll(async () => {
    baseline = process.getActiveResourcesInfo();
    [a, b] = await Promise.all([
      createMockUpstream({ maxRecorded: 0 }),
      createMockUpstream({ maxRecorded: 0 }),
    ]);
    a.setBehaviour(behaviour);
    b.setBehaviour(behaviour);
    store = new MemoryKeyStore();
    await store.createKey({ id: 'chaos', name: 'chaos', hash: hashApiKey(KEY), prefix: 'sk-llmux-chao' });
    // Count what the middleware asks of the real store: admissions and settlements.
    const admit = store.admit.bind(store);
    store.admit = async (request) => {
      const result = await admit(request);
      if (result.ok) {
        admitted++;
        settles.set(result.reservationId, 0);
      }
      return result;
    };
    const settle = store.settle.bind(store);
    store.settle = async (id, settlement) => {
      settles.set(id, (settles.get(id) ?? 0) + 1);
      return settle(id, settlement);
    };
    pool = upstreamPool({
      upstreams: [
        { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
        { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
      ],
      cooldown: { baseMs: 20, maxMs: 100, rateLimitMs: 20, failureThreshold: 3 },
    });
    gateway = llmux({
      upstream: pool,
      auth: { store },
      gate: { max: 16, maxQueue: 1_000, queueTimeoutMs: 10_000 },
      relay: {
        firstByteTimeoutMs: 400,
        idleTimeoutMs: 400,
        retry: retry({
          attempts: 2,
          baseDelayMs: 1,
          maxDelayMs: 5,
          budget: { ratio: 0.5, minRetriesPerWindow: 50 },
        }),
      },
      logger: { error: () => undefined },
    });
    const app = express();
    app.use(gateway);
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await shutdown(server, [gateway, a, b], { timeoutMs: 2_000 });
  });

  function send(stream: boolean, abortAfterMs: number | undefined): Promise<Outcome> {
    return new Promise((resolve) => {
      const body = JSON.stringify({
        model: 'gpt-4o-mini',
        stream,
        max_tokens: 16,
        messages: [{ role: 'user', content: 'chaos' }],
      });
      let timer: NodeJS.Timeout | undefined;
      const req = http.request(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), aborted: false });
          });
          res.on('error', () => undefined);
          res.on('aborted', () => undefined);
        },
      );
      req.on('error', () => {
        clearTimeout(timer);
        resolve({ status: 0, body: '', aborted: true });
      });
      req.on('close', () => {
        clearTimeout(timer);
        resolve({ status: 0, body: '', aborted: true });
      });
      if (abortAfterMs !== undefined) timer = setTimeout(() => req.destroy(), abortAfterMs);
      req.end(body);
    });
  }

  it(`relays ${REQUESTS} requests without losing a permit, a slot, a handle or a bill`, async () => {
    const outcomes: Outcome[] = [];
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        next++;
        const stream = random() < 0.5;
        const abort =
          random() < Number(process.env.CHAOS_ABORT ?? 0.15) ? Math.floor(random() * 60) : undefined;
        outcomes.push(await send(stream, abort));
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(outcomes).toHaveLength(REQUESTS);

    // Every answer is a success, an OpenAI-shaped error, or a stream ending cleanly or with an error frame.
    for (const outcome of outcomes) {
      if (outcome.aborted) continue;
      if (outcome.status === 200) {
        if (outcome.body.startsWith('data:') || outcome.body.startsWith('event:')) {
          expect(
            outcome.body.endsWith('data: [DONE]\n\n') || /event: error\ndata: \{"error"/.test(outcome.body),
          ).toBe(true);
        } else {
          expect(JSON.parse(outcome.body)).toHaveProperty('choices');
        }
      } else {
        expect(JSON.parse(outcome.body)).toHaveProperty('error.code');
      }
    }
    expect(outcomes.filter((o) => o.status === 200).length).toBeGreaterThan(REQUESTS / 3);

    // Settlement runs on each response's 'close': give the last ones a moment, bounded.
    for (let i = 0; i < 300 && [...settles.values()].some((n) => n === 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(admitted).toBeGreaterThan(0);
    expect([...settles.values()].every((n) => n === 1)).toBe(true);
    expect(settles.size).toBe(admitted);

    expect(pool.inFlightTotal()).toBe(0);
    expect(gateway.pieces.gate!.stats()).toEqual({ inFlight: 0, queued: 0, keys: 0 });

    await shutdown(server, [gateway, a, b], { timeoutMs: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // No socket or server is left beyond what the process had before (jest's own handles aside).
    const count = (list: string[], kind: string) => list.filter((r) => r === kind).length;
    const now = process.getActiveResourcesInfo();
    expect(count(now, 'TCPSocketWrap')).toBeLessThanOrEqual(count(baseline, 'TCPSocketWrap'));
    expect(count(now, 'TCPServerWrap')).toBeLessThanOrEqual(count(baseline, 'TCPServerWrap'));
  });
});
