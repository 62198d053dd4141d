import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { shutdown } from '../lib/index.js';
import { buildGateway, type Gateway } from '../examples/gateway-app.js';

const ADMIN = 'admin-key-for-tests-0123456789';

describe('the example gateway with the OpenAI SDK', () => {
  let gateway: Gateway;
  let base: string;

  beforeAll(async () => {
    gateway = await buildGateway({ upstreamKeys: [], demoKey: 'sk-llmux-demo', adminKey: ADMIN });
    await new Promise<void>((resolve) => gateway.server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(gateway.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await Promise.all(gateway.beforeDrain.map((piece) => piece.close()));
    await shutdown(gateway.server, gateway.closables, { timeoutMs: 2_000 });
  });

  const admin = (path: string, init: { method?: string; body?: unknown } = {}) =>
    fetch(`${base}/admin${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  const sdk = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0 });
  const ask = (apiKey: string) =>
    sdk(apiKey).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });

  it('serves the demo key', async () => {
    expect((await ask('sk-llmux-demo')).choices[0]!.message.role).toBe('assistant');
  });

  it('serves a key created through /admin, and refuses it once revoked', async () => {
    const created = await admin('/keys', { method: 'POST', body: { name: 'alice', budgetUsd: 5 } });
    expect(created.status).toBe(201);
    const { id, key } = (await created.json()) as { id: string; key: string };
    expect((await ask(key)).usage?.total_tokens).toBeGreaterThan(0);
    expect((await admin(`/keys/${id}`, { method: 'DELETE' })).status).toBe(200);
    const err = await ask(key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('answers a spent budget with RateLimitError code insufficient_quota', async () => {
    const created = await admin('/keys', { method: 'POST', body: { name: 'bob', budgetUsd: 0.000001 } });
    const { key } = (await created.json()) as { key: string };
    const err = await ask(key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('insufficient_quota');
  });

  it('serves metrics, tracker stats and health for what it relayed', async () => {
    await ask('sk-llmux-demo');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/llmux_requests_total\{[^}]*route="\/v1\/chat\/completions"[^}]*\} [1-9]/);
    const stats = await fetch(`${base}/llmux/stats?window=1h`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(stats.status).toBe(200);
    expect(((await stats.json()) as { count: number }).count).toBeGreaterThan(0);
    expect((await fetch(`${base}/llmux/stats`)).status).toBe(401);
    expect((await fetch(`${base}/health/ready`)).status).toBe(200);
  });
});
