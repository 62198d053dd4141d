import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import {
  bodyLimit,
  concurrencyGate,
  createMetrics,
  healthRouter,
  keyAuth,
  llmux,
  MemoryKeyStore,
  passthrough,
  RequestTracker,
  retry,
  streamRelay,
  trackerRouter,
  upstreamPool,
} from '../lib/index.js';
import { describeValue, OptionReader } from '../lib/options.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

describe('OptionReader', () => {
  const read = new OptionReader('factory');

  it.each([
    ['positiveInteger', () => read.positiveInteger('n', 0), 'factory: n must be a positive integer, got 0'],
    [
      'positiveInteger',
      () => read.positiveInteger('n', '4'),
      'factory: n must be a positive integer, got "4"',
    ],
    [
      'positiveInteger',
      () => read.positiveInteger('n', 1.5),
      'factory: n must be a positive integer, got 1.5',
    ],
    ['positiveInteger', () => read.positiveInteger('n', 11, 1, 10), 'factory: n must be at most 10, got 11'],
    [
      'nonNegativeInteger',
      () => read.nonNegativeInteger('n', -1),
      'factory: n must be a non-negative integer',
    ],
    ['durationMs', () => read.durationMs('t', 2 ** 31), 'factory: t must be at most 2147483647'],
    ['durationMs', () => read.durationMs('t', Number.NaN), 'factory: t must be a positive integer, got NaN'],
    ['nonNegativeNumber', () => read.nonNegativeNumber('x', -0.5), 'factory: x must be a finite number >= 0'],
    ['positiveNumber', () => read.positiveNumber('x', 0), 'factory: x must be a finite number > 0, got 0'],
    ['boolean', () => read.boolean('b', 'yes', true), 'factory: b must be a boolean, got "yes"'],
    ['function', () => read.function('f', 5 as never), 'factory: f must be a function, got 5'],
    ['oneOf', () => read.oneOf('m', 'c', ['a', 'b']), "factory: m must be one of 'a', 'b', got \"c\""],
    ['string', () => read.string('s', ''), 'factory: s must be a string of 1-256 characters, got ""'],
    ['object', () => read.object('o', [] as never), 'factory: o must be an object, got an array'],
    ['options', () => read.options(undefined, true), 'factory: options are required'],
    ['required', () => read.positiveInteger('max', undefined), 'factory: max is required'],
    [
      'implementing',
      () => read.implementing('store', {}, ['get'], 'a store'),
      'factory: store must be a store',
    ],
  ])('%s refuses with a TypeError naming the owner, the option and the value', (_kind, run, message) => {
    expect(run).toThrow(TypeError);
    expect(run).toThrow(message);
  });

  it('fills defaults and passes valid values through', () => {
    expect(read.positiveInteger('n', undefined, 7)).toBe(7);
    expect(read.durationMs('t', 0, 5, 0)).toBe(0);
    expect(read.boolean('b', undefined, false)).toBe(false);
    expect(read.oneOf('m', undefined, ['a', 'b'], 'b')).toBe('b');
    expect(read.optionalPositiveInteger('n', undefined)).toBeUndefined();
    expect(read.object('o', undefined)).toEqual({});
  });

  it('never echoes a long string or the contents of an object', () => {
    expect(describeValue('x'.repeat(500)).length).toBeLessThan(80);
    expect(describeValue({ apiKey: 'sk-secret' })).toBe('an object');
  });
});

describe('every factory refuses a wrong option type at construction, not per request', () => {
  const upstream = 'http://127.0.0.1:1/v1';
  it.each([
    ['streamRelay retry', () => streamRelay({ upstream, retry: 3 as never })],
    ['streamRelay clients', () => streamRelay({ upstream, clients: 'many' as never })],
    ['streamRelay hedge', () => streamRelay({ upstream, hedge: { afterMs: 'soon' } as never })],
    ['streamRelay route', () => streamRelay({ upstream, route: '/chat' as never })],
    ['streamRelay forwardHeaders', () => streamRelay({ upstream, forwardHeaders: 'x-a' as never })],
    ['streamRelay requestStreamUsage', () => streamRelay({ upstream, requestStreamUsage: 1 as never })],
    ['bodyLimit parse', () => bodyLimit({ parse: 'xml' as never })],
    ['keyAuth store', () => keyAuth({ store: {} as never })],
    ['keyAuth clock', () => keyAuth({ keys: [], clock: 1 as never })],
    ['keyAuth pricing', () => keyAuth({ keys: [], pricing: 'cheap' as never })],
    ['keyAuth logger', () => keyAuth({ keys: [], logger: console.log as never })],
    ['concurrencyGate', () => concurrencyGate({ max: '4' as never })],
    ['passthrough route', () => passthrough({ target: upstream, route: 1 as never })],
    ['upstreamPool cooldown', () => upstreamPool({ upstreams: [{ url: upstream }], cooldown: 5 as never })],
    ['retry budget', () => retry({ budget: 0.2 as never })],
    ['healthRouter stores', () => healthRouter({ stores: [{ name: 'x' }] as never })],
    ['RequestTracker sink', () => new RequestTracker({ sink: {} as never })],
    ['trackerRouter', () => trackerRouter(new RequestTracker(), { snapshotWindow: '2h' as never })],
    ['MemoryKeyStore authFailures', () => new MemoryKeyStore({ authFailures: 5 as never })],
    ['createMetrics models', () => createMetrics({ models: 'gpt-4o' as never })],
    ['llmux relay', () => llmux({ upstream, auth: false, relay: 'fast' as never })],
    ['llmux metrics', () => llmux({ upstream, auth: false, metrics: {} as never })],
    ['llmux tracker', () => llmux({ upstream, auth: false, tracker: {} as never })],
    ['llmux gate', () => llmux({ upstream, auth: false, gate: { max: 0 } })],
  ])('%s', (_name, build) => {
    expect(build).toThrow(TypeError);
  });
});

describe('streamRelay({ retry: { … } }) with plain options', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  it('builds the policy from them and retries, instead of failing every request', async () => {
    const relay = streamRelay({ upstream: `${mock.url}/v1`, retry: { attempts: 3, baseDelayMs: 0 } });
    const app = express().post('/v1/chat/completions', relay);
    mock.enqueue({ status: 500 }, { status: 503 });
    const res = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(mock.requests).toHaveLength(3);
    await relay.close();
  });
});
