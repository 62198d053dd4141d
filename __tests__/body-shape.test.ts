// Bodies a hostile client sends to crash or fool the relay: nesting deep enough to exhaust the
// stack, and a `stream` flag that is not a boolean.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import fc from 'fast-check';
import request from 'supertest';
import { llmux, type Logger } from '../lib/index.js';
import { nestingExceeds } from '../lib/middleware/body-limit.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { fuzzRuns } from './support/fuzz.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await createMockUpstream();
});
afterAll(async () => {
  await mock.close();
});

function gateway() {
  const logged: string[] = [];
  const logger: Logger = { error: (message) => void logged.push(message) };
  const router = llmux({ upstream: `${mock.url}/v1`, auth: false, logger });
  return { app: express().use(router), router, logged };
}

function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((deepest, child) => Math.max(deepest, depthOf(child)), 0);
}

describe('JSON nesting', () => {
  it.each([
    ['arrays', `{"model":"m","messages":${'['.repeat(100_000)}${']'.repeat(100_000)}}`],
    ['objects', `{"model":"m","x":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`],
  ])('100 000 levels of %s is a 400 invalid_json, logged nowhere', async (_kind, body) => {
    const { app, router, logged } = gateway();
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('content-type', 'application/json')
      .send(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_json');
    expect(res.body.error.message).toContain('nesting');
    expect(logged).toEqual([]);
    expect(mock.requests).toHaveLength(0);
    await router.close();
  });

  it('counts only structure: brackets and escaped quotes inside strings are text', () => {
    const text = JSON.stringify({ content: '[[[[{{{{ \\" [[[[' + '['.repeat(1_000), tools: [[[1]]] });
    expect(nestingExceeds(Buffer.from(text), 4)).toBe(false);
    expect(nestingExceeds(Buffer.from(text), 3)).toBe(true);
  });

  it('agrees with the real depth of any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 12 }), fc.integer({ min: 0, max: 14 }), (value, limit) => {
        const raw = Buffer.from(JSON.stringify(value));
        expect(nestingExceeds(raw, limit)).toBe(depthOf(value) > limit);
      }),
      { numRuns: fuzzRuns(300) },
    );
  });
});

describe('the stream flag', () => {
  it.each([['true'], [1], ['yes'], [{}]])(
    '%j is refused with 400 naming param stream, never relayed',
    async (stream) => {
      const { app, router } = gateway();
      const res = await request(app)
        .post('/v1/chat/completions')
        .send({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'stream' });
      expect(mock.requests).toHaveLength(0);
      await router.close();
    },
  );

  it.each([[true], [false], [null]])('%j is relayed', async (stream) => {
    const { app, router } = gateway();
    const res = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    mock.reset();
    await router.close();
  });
});
