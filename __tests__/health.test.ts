// healthRouter against real Express apps (5 and 4): live always answers, ready turns 503 with
// Retry-After when a pool has no upstream to send to (a fake status() and a real UpstreamPool)
// or a store's ping fails or hangs past timeoutMs (fake timers), and never shows a key.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import request from 'supertest';
import {
  healthRouter,
  type HealthPool,
  type HealthRouterOptions,
  type HealthStore,
} from '../lib/health/router.js';
import { UpstreamPool } from '../lib/upstream/pool.js';
import { expressVersions } from './support/express-versions.js';

type ExpressFactory = (typeof expressVersions)[number][1];

const API_KEY_A = 'sk-upstream-a-0123456789abcdefghij';
const API_KEY_B = 'sk-upstream-b-0123456789abcdefghij';

/** A pool stand-in: the interface readiness reads, nothing more. */
function fakePool(...states: string[]): HealthPool {
  return { status: () => states.map((state, i) => ({ name: `up${i}`, state })) };
}

const okStore = (name: string): HealthStore => ({ name, ping: async () => {} });

function app(express: ExpressFactory, options: HealthRouterOptions) {
  const application = express();
  application.use(healthRouter({ clock: () => 0, ...options }));
  return application;
}

describe.each(expressVersions)('healthRouter on %s', (_label, express) => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('answers live with 200 whatever the components say', async () => {
    const res = await request(app(express, { pool: fakePool('cooling') })).get('/health/live');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('answers ready with 200 and the components when everything is up', async () => {
    const res = await request(
      app(express, { pool: fakePool('healthy', 'cooling'), stores: [okStore('redis')] }),
    ).get('/health/ready');
    expect(res.status).toBe(200);
    expect(res.headers['retry-after']).toBeUndefined();
    expect(res.body).toEqual({
      status: 'ok',
      components: {
        upstreams: {
          kind: 'pool',
          status: 'ok',
          upstreams: [
            { name: 'up0', state: 'healthy' },
            { name: 'up1', state: 'cooling' },
          ],
        },
        redis: { kind: 'store', status: 'ok', latencyMs: 0 },
      },
    });
  });

  it('answers ready with 200 when no component is configured', async () => {
    const res = await request(app(express, {})).get('/health/ready');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', components: {} });
  });

  it.each([
    ['healthy', 200],
    ['half-open', 200],
    ['cooling', 503],
    ['disabled', 503],
  ])('treats a pool whose only upstream is %s as %i', async (state, status) => {
    const res = await request(app(express, { pool: fakePool(state) })).get('/health/ready');
    expect(res.status).toBe(status);
  });

  it('answers 503 with Retry-After and the reason when every upstream of a pool is cooling', async () => {
    const res = await request(
      app(express, {
        pools: [fakePool('healthy'), fakePool('cooling', 'disabled')],
        stores: [okStore('redis')],
        retryAfterSeconds: 7,
      }),
    ).get('/health/ready');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      status: 'unavailable',
      reason: 'every upstream of pool upstreams#1 is cooling or disabled',
      components: {
        'upstreams#0': { kind: 'pool', status: 'ok', upstreams: [{ name: 'up0', state: 'healthy' }] },
        'upstreams#1': {
          kind: 'pool',
          status: 'unavailable',
          reason: 'every upstream of pool upstreams#1 is cooling or disabled',
          upstreams: [
            { name: 'up0', state: 'cooling' },
            { name: 'up1', state: 'disabled' },
          ],
        },
        redis: { kind: 'store', status: 'ok', latencyMs: 0 },
      },
    });
  });

  it('reads a real UpstreamPool whose upstreams were all taken out by 401s, showing no key', async () => {
    const pool = new UpstreamPool({
      upstreams: [
        { url: 'https://a.example.com/v1', apiKey: API_KEY_A, name: 'a' },
        { url: 'https://b.example.com/v1', apiKey: API_KEY_B, name: 'b' },
      ],
      clock: () => Date.parse('2026-03-28T12:00:00.000Z'),
    });
    const application = app(express, { pool });
    expect((await request(application).get('/health/ready')).status).toBe(200);

    for (let i = 0; i < 2; i++) {
      const endpoint = pool.acquire(undefined);
      pool.release(endpoint, { ok: false, category: 'auth', status: 401, retryAfterMs: undefined });
    }
    const res = await request(application).get('/health/ready');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.reason).toBe('every upstream of pool upstreams is cooling or disabled');
    expect(res.body.components.upstreams.upstreams).toEqual([
      { name: 'a', state: 'disabled' },
      { name: 'b', state: 'disabled' },
    ]);
    for (const key of [API_KEY_A, API_KEY_B]) {
      expect(res.text).not.toContain(key);
      expect(res.text).not.toContain(key.slice(-4));
    }
  });

  it('answers 503 when a store ping rejects, without the error message', async () => {
    const failing: HealthStore = {
      name: 'redis',
      ping: () =>
        Promise.reject(
          Object.assign(new Error('connect ECONNREFUSED redis://:hunter2@10.0.0.5:6379'), {
            code: 'ECONNREFUSED',
          }),
        ),
    };
    const res = await request(app(express, { pool: fakePool('healthy'), stores: [failing] })).get(
      '/health/ready',
    );
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.reason).toBe('store redis is unreachable');
    expect(res.body.components.redis).toEqual({
      kind: 'store',
      status: 'unavailable',
      latencyMs: 0,
      reason: 'store redis is unreachable',
      code: 'ECONNREFUSED',
    });
    expect(res.text).not.toContain('hunter2');
  });

  it('answers 503 when a store ping throws synchronously', async () => {
    const throwing: HealthStore = {
      name: 'db',
      ping: () => {
        throw new Error('not connected');
      },
    };
    const res = await request(app(express, { stores: [throwing] })).get('/health/ready');
    expect(res.status).toBe(503);
    expect(res.body.reason).toBe('store db is unreachable');
  });

  it('answers 503 when a store ping hangs past timeoutMs, and clears its timer', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    let pinged!: () => void;
    const wasPinged = new Promise<void>((resolve) => (pinged = resolve));
    const hanging: HealthStore = {
      name: 'redis',
      ping: () => {
        pinged();
        return new Promise<void>(() => {});
      },
    };
    const pending = request(app(express, { stores: [hanging, okStore('keys')], timeoutMs: 1_000 }))
      .get('/health/ready')
      .then((res) => res);
    await wasPinged;
    await jest.advanceTimersByTimeAsync(999);
    expect(jest.getTimerCount()).toBe(1); // the hanging ping's timer is still waiting; the other's is cleared
    await jest.advanceTimersByTimeAsync(1);
    const res = await pending;
    expect(res.status).toBe(503);
    expect(res.body.reason).toBe('store redis did not answer within 1000 ms');
    expect(res.body.components.redis).toMatchObject({ status: 'unavailable', latencyMs: 1_000 });
    expect(res.body.components.keys).toMatchObject({ status: 'ok' });
    expect(jest.getTimerCount()).toBe(0);
  });

  it('leaves no timer behind after a ping that answers', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const res = await request(app(express, { stores: [okStore('redis')] })).get('/health/ready');
    expect(res.status).toBe(200);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('shares one round of pings between overlapping checks', async () => {
    let arrived = 0;
    let bothArrived!: () => void;
    const arrivals = new Promise<void>((resolve) => (bothArrived = resolve));
    let answer!: () => void;
    const ping = jest.fn(() => new Promise<void>((resolve) => (answer = resolve)));
    const application = express();
    application.use((_req, _res, next) => {
      if (++arrived === 2) bothArrived();
      next();
    });
    application.use(healthRouter({ stores: [{ name: 'redis', ping }] }));
    const first = request(application)
      .get('/health/ready')
      .then((res) => res);
    const second = request(application)
      .get('/health/ready')
      .then((res) => res);
    await arrivals;
    answer();
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(ping).toHaveBeenCalledTimes(1);
    // The next check pings again.
    const third = request(application)
      .get('/health/ready')
      .then((res) => res);
    await new Promise<void>((resolve) => {
      const poll = (): void => (ping.mock.calls.length === 2 ? resolve() : void setImmediate(poll));
      poll();
    });
    answer();
    expect((await third).status).toBe(200);
  });

  it('reports a pool whose status() throws as unavailable', async () => {
    const broken: HealthPool = {
      status: () => {
        throw new Error('boom');
      },
    };
    const res = await request(app(express, { pool: broken })).get('/health/ready');
    expect(res.status).toBe(503);
    expect(res.body.reason).toBe('pool upstreams: status() failed');
  });
});

describe('healthRouter options', () => {
  it.each<[string, HealthRouterOptions]>([
    ['timeoutMs', { timeoutMs: 0 }],
    ['retryAfterSeconds', { retryAfterSeconds: 1.5 }],
    ['pool', { pool: {} as HealthPool }],
    ['pools', { pools: 'x' as unknown as HealthPool[] }],
    ['stores[0]', { stores: [{ name: 'x' } as HealthStore] }],
    ['stores[0].name', { stores: [{ name: '', ping: async () => {} }] }],
    ['unique', { stores: [okStore('redis'), okStore('redis')] }],
    ['clock', { clock: 1 as unknown as () => number }],
  ])('throws a TypeError naming %s', (name, options) => {
    expect(() => healthRouter(options)).toThrow(TypeError);
    expect(() => healthRouter(options)).toThrow(name);
  });
});
