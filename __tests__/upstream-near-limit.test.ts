// Members near their upstream's rate limit: a pool of two keys in front of a real loopback mock,
// on an injected clock. A member whose upstream reported less than `cooldown.nearLimitShare` of a
// window left is passed over until that window resets while the other can serve; a 429 carrying
// rate-limit headers but no Retry-After cools its member until the spent window resets.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay, type StreamRelay } from '../lib/middleware/stream-relay.js';
import { retry } from '../lib/retry/policy.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';
import { UpstreamPool, type UpstreamPoolCooldownOptions } from '../lib/upstream/pool.js';
import { chat } from './support/http.js';

const KEY_A = 'sk-member-a-0123456789abcdef';
const KEY_B = 'sk-member-b-0123456789abcdef';
const T0 = Date.parse('2026-12-04T12:00:00.000Z');

/** 1 request of 100 left, the window resets in 20 s: under the default share of 0.05. */
const NEAR_LIMIT: MockBehaviour = {
  headers: {
    'x-ratelimit-limit-requests': '100',
    'x-ratelimit-remaining-requests': '1',
    'x-ratelimit-reset-requests': '20s',
    'x-ratelimit-limit-tokens': '30000',
    'x-ratelimit-remaining-tokens': '29000',
    'x-ratelimit-reset-tokens': '100ms',
  },
};

/** A 429 in OpenAI's words, with `headers` and no Retry-After unless `retryAfter` is given. */
const rateLimited = (headers: Record<string, string>, retryAfter?: string): MockBehaviour => ({
  status: 429,
  body: {
    error: {
      message: 'Rate limit reached for requests',
      type: 'requests',
      code: 'rate_limit_exceeded',
      param: null,
    },
  },
  headers,
  retryAfter,
});

const anthropicMessage = {
  model: 'claude-sonnet-4-5',
  max_tokens: 10,
  messages: [{ role: 'user', content: 'hi' }],
};

describe('members near their upstream’s rate limit', () => {
  let mock: MockUpstream;
  let now: number;
  let pool: UpstreamPool;
  let relay: StreamRelay;
  let app: express.Express;

  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await relay?.close();
    await mock.close();
  });
  beforeEach(() => build());

  /** A fresh round-robin pool of a and b on the fake clock, behind a relay that retries. */
  async function build(cooldown?: UpstreamPoolCooldownOptions): Promise<void> {
    await relay?.close();
    mock.reset();
    now = T0;
    pool = new UpstreamPool({
      upstreams: [
        { url: `${mock.url}/v1`, apiKey: KEY_A, name: 'a' },
        { url: `${mock.url}/v1`, apiKey: KEY_B, name: 'b' },
      ],
      clock: () => now,
      cooldown,
    });
    relay = streamRelay({
      upstream: pool,
      // A Retry-After over 1 s is not slept through: the client hears the 429 at once.
      retry: retry({ attempts: 2, baseDelayMs: 0, maxDelayMs: 0, maxRetryAfterMs: 1_000 }),
    });
    app = express();
    app.post('/v1/chat/completions', bodyLimit(), relay);
    app.post('/v1/messages', bodyLimit(), relay);
  }

  const send = async (): Promise<void> => {
    const res = await request(app).post('/v1/chat/completions').send(chat());
    expect(res.status).toBe(200);
  };
  /** The member each request reached, in order (OpenAI sends the key as a bearer, Anthropic as x-api-key). */
  const members = () =>
    mock.requests.map((r) => {
      const key = r.headers['x-api-key'] ?? r.headers.authorization;
      return key === KEY_A || key === `Bearer ${KEY_A}` ? 'a' : 'b';
    });
  const statusOf = (name: string) => pool.status().find((s) => s.name === name)!;

  it('spares a member with 1 request of 100 left until its window resets, then serves it again', async () => {
    mock.enqueue(NEAR_LIMIT);
    await send();
    expect(members()).toEqual(['a']);
    expect(statusOf('a')).toMatchObject({ state: 'healthy', nearLimit: true });
    expect(statusOf('b')).toMatchObject({ state: 'healthy', nearLimit: false });

    for (let i = 0; i < 4; i++) await send();
    expect(members()).toEqual(['a', 'b', 'b', 'b', 'b']);

    now += 19_999;
    await send();
    expect(members().slice(5)).toEqual(['b']);
    expect(statusOf('a').nearLimit).toBe(true);

    now += 1;
    expect(statusOf('a').nearLimit).toBe(false);
    for (let i = 0; i < 4; i++) await send();
    expect(members().slice(6)).toEqual(['a', 'b', 'a', 'b']);
  });

  it('still serves from the near-limit member when the other is disabled', async () => {
    mock.enqueue(NEAR_LIMIT);
    await send();
    pool.disable('b');
    await send();
    await send();
    expect(members()).toEqual(['a', 'a', 'a']);
  });

  it('retries on the near-limit member when the other one failed', async () => {
    mock.enqueue(NEAR_LIMIT, { status: 500 });
    await send();
    // b answers 500; the retry excludes it, and the spared a is the one left.
    await send();
    expect(members()).toEqual(['a', 'b', 'a']);
  });

  it('clears the mark as soon as an answer reports room again', async () => {
    mock.enqueue(NEAR_LIMIT, {
      headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '90' },
    });
    await send();
    pool.disable('b');
    await send();
    expect(statusOf('a').nearLimit).toBe(false);
    pool.enable('b');
    for (let i = 0; i < 4; i++) await send();
    expect(members()).toEqual(['a', 'a', 'b', 'a', 'b', 'a']);
  });

  it('does not spare a member left with exactly the share (5 of 100)', async () => {
    mock.enqueue({
      headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '5' },
    });
    for (let i = 0; i < 4; i++) await send();
    expect(statusOf('a').nearLimit).toBe(false);
    expect(members()).toEqual(['a', 'b', 'a', 'b']);
  });

  it('spares nothing with nearLimitShare: 0', async () => {
    await build({ nearLimitShare: 0 });
    mock.setBehaviour({
      headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '0' },
    });
    for (let i = 0; i < 4; i++) await send();
    expect(members()).toEqual(['a', 'b', 'a', 'b']);
    expect(pool.status().map((s) => s.nearLimit)).toEqual([false, false]);
  });

  it.each([-0.1, 1.5, Number.NaN, '0.05'])(
    'refuses nearLimitShare %p with a TypeError naming it',
    (share) => {
      expect(
        () =>
          new UpstreamPool({
            upstreams: [{ url: `${mock.url}/v1` }],
            cooldown: { nearLimitShare: share as number },
          }),
      ).toThrow(/cooldown\.nearLimitShare must be a number from 0 to 1/);
    },
  );

  it("spares a member by Anthropic's headers until their reset instant", async () => {
    mock.enqueue({
      headers: {
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '45',
        'anthropic-ratelimit-requests-reset': new Date(Date.now() + 5_000).toISOString(),
        'anthropic-ratelimit-input-tokens-limit': '100000',
        'anthropic-ratelimit-input-tokens-remaining': '2000',
        'anthropic-ratelimit-input-tokens-reset': new Date(Date.now() + 30_000).toISOString(),
      },
    });
    const first = await request(app).post('/v1/messages').send(anthropicMessage);
    expect(first.status).toBe(200);
    expect(statusOf('a').nearLimit).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect((await request(app).post('/v1/messages').send(anthropicMessage)).status).toBe(200);
    }
    expect(members()).toEqual(['a', 'b', 'b', 'b']);
    // The reset instant is read against the real clock: within 30 s of the answer, and past it
    // 30 s on the pool's clock.
    now += 25_000;
    expect(statusOf('a').nearLimit).toBe(true);
    now += 5_000;
    expect(statusOf('a').nearLimit).toBe(false);
    expect((await request(app).post('/v1/messages').send(anthropicMessage)).status).toBe(200);
    expect(members()[4]).toBe('a');
  });

  describe('a 429 without Retry-After', () => {
    it('cools its member until the spent window resets; the other serves meanwhile', async () => {
      mock.enqueue(
        rateLimited({
          'x-ratelimit-limit-requests': '100',
          'x-ratelimit-remaining-requests': '0',
          'x-ratelimit-reset-requests': '20s',
          'x-ratelimit-limit-tokens': '30000',
          'x-ratelimit-remaining-tokens': '29000',
          'x-ratelimit-reset-tokens': '100ms',
        }),
      );
      await send();
      expect(members()).toEqual(['a', 'b']);
      expect(statusOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 20_000 });

      now += 19_999;
      await send();
      expect(members()[2]).toBe('b');
      now += 1;
      expect(statusOf('a')).toMatchObject({ state: 'healthy', nearLimit: false });
      await send();
      expect(members()[3]).toBe('a');
    });

    it('cools its member until the last of two spent windows resets', async () => {
      mock.enqueue(
        rateLimited({
          'x-ratelimit-limit-requests': '100',
          'x-ratelimit-remaining-requests': '0',
          'x-ratelimit-reset-requests': '1s',
          'x-ratelimit-limit-tokens': '30000',
          'x-ratelimit-remaining-tokens': '0',
          'x-ratelimit-reset-tokens': '6m0s',
        }),
      );
      await send();
      expect(statusOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 360_000 });
    });

    it('cools for cooldown.rateLimitMs when the reset cannot be read', async () => {
      mock.enqueue(
        rateLimited({
          'anthropic-ratelimit-requests-limit': '50',
          'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-requests-reset': '1',
        }),
      );
      await send();
      expect(statusOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 30_000 });
    });

    it('lets a Retry-After win over the reset, and the member stays spared until the reset', async () => {
      mock.enqueue(
        rateLimited(
          {
            'x-ratelimit-limit-requests': '100',
            'x-ratelimit-remaining-requests': '0',
            'x-ratelimit-reset-requests': '20s',
          },
          '2',
        ),
      );
      // b is free: the retry goes there at once, whatever a asked to wait.
      await send();
      expect(statusOf('a')).toMatchObject({ state: 'cooling', cooldownRemainingMs: 2_000 });
      now += 2_000;
      expect(statusOf('a')).toMatchObject({ state: 'healthy', nearLimit: true });
      await send();
      await send();
      expect(members()).toEqual(['a', 'b', 'b', 'b']);
      now += 18_000;
      await send();
      expect(members()[4]).toBe('a');
    });
  });
});
