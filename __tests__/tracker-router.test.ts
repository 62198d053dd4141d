// trackerRouter against real Express apps (5 and 4): /stats and /recent as JSON with OpenAI-shaped
// 400s, and the /live SSE feed: bounded clients, slow ones dropped, one timer only while needed.
import { describe, expect, it, jest } from '@jest/globals';
import http from 'node:http';
import net from 'node:net';
import request from 'supertest';
import type { Logger } from '../lib/log.js';
import type { RequestRecord } from '../lib/tracking/record.js';
import { RequestTracker } from '../lib/tracking/tracker.js';
import {
  trackerRouter,
  type TrackerRouter,
  type TrackerRouterOptions,
} from '../lib/tracking/tracker-router.js';
import { expressVersions } from './support/express-versions.js';
import { listen, waitFor } from './support/http.js';

type ExpressFactory = (typeof expressVersions)[number][1];

const NOW_MS = Date.parse('2025-06-01T12:00:30.000Z');
const silentLogger: Logger = { error: () => undefined };

let sequence = 0;
function makeRecord(overrides: Partial<RequestRecord> = {}): RequestRecord {
  sequence++;
  return {
    id: `req-${sequence}`,
    timeMs: NOW_MS,
    route: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    keyId: 'key-1',
    teamId: 'team-1',
    userId: undefined,
    status: 200,
    errorCode: undefined,
    stream: true,
    latencyMs: 250,
    ttfbMs: 40,
    promptTokens: 10,
    completionTokens: 5,
    costUsd: 0.002,
    upstream: 'primary',
    attempts: 1,
    ...overrides,
  };
}

/** An app with the tracker's middleware on everything and its router under `/llmux`. */
function setup(express: ExpressFactory, options: TrackerRouterOptions = {}) {
  const tracker = new RequestTracker({ clock: () => NOW_MS, logger: silentLogger });
  const router = trackerRouter(tracker, options);
  const app = express();
  app.use(tracker.middleware());
  app.use('/llmux', router);
  return { app, tracker, router };
}

interface SseClient {
  status: number;
  /** Everything received (left empty when `keepText` is false). */
  text: string;
  /** `event: request` frames received, counted as the bytes arrive. */
  requestEvents: number;
  ended: boolean;
  closed: boolean;
  leave(): void;
}

const REQUEST_EVENT = 'event: request\n';

/** A reading client of `path`: reads everything the server sends as soon as it comes. */
function sseClient(port: number, { keepText = true } = {}): SseClient {
  const req = http.get({ host: '127.0.0.1', port, path: '/llmux/live', agent: false });
  const client: SseClient = {
    status: 0,
    text: '',
    requestEvents: 0,
    ended: false,
    closed: false,
    leave: () => req.destroy(),
  };
  // The end of the last chunk, shorter than the marker, so a marker split across chunks counts once.
  let carry = '';
  req.on('error', () => {
    client.closed = true;
  });
  req.on('response', (res) => {
    client.status = res.statusCode ?? 0;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (keepText) client.text += chunk;
      const joined = carry + chunk;
      client.requestEvents += occurrences(joined, REQUEST_EVENT);
      carry = joined.slice(-(REQUEST_EVENT.length - 1));
    });
    res.on('end', () => {
      client.ended = true;
    });
    res.on('close', () => {
      client.closed = true;
    });
  });
  return client;
}

const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

/** A client that asks for the feed and then never reads a byte. */
function nonReadingClient(port: number): net.Socket {
  const socket = net.connect({ host: '127.0.0.1', port });
  // Paused before it connects, the socket never starts reading: the kernel buffers fill, then ours.
  socket.pause();
  socket.on('error', () => undefined);
  socket.write('GET /llmux/live HTTP/1.1\r\nHost: localhost\r\n\r\n');
  return socket;
}

/** The data of every `event: <name>` frame so far, parsed. */
function eventsOf(text: string, name: string): unknown[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith(`event: ${name}\n`))
    .map((frame) => JSON.parse(frame.slice(frame.indexOf('data: ') + 6)) as unknown);
}

describe.each(expressVersions)('trackerRouter JSON routes on %s', (_label, express) => {
  it('serves every model over the last hour by default', async () => {
    const { app, tracker } = setup(express);
    tracker.record(makeRecord({ latencyMs: 100 }));
    tracker.record(makeRecord({ latencyMs: 300, model: 'gpt-4o', status: 502 }));
    const res = await request(app).get('/llmux/stats').expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({
      model: '*',
      window: '1h',
      count: 2,
      errors: 1,
      errorRate: 0.5,
      avgLatencyMs: 200,
      avgTtfbMs: 40,
      totalTokens: 30,
    });
    expect(res.body.p50LatencyMs).toBeGreaterThan(0);
  });

  it('serves one model over the asked window', async () => {
    const { app, tracker } = setup(express);
    tracker.record(makeRecord({ model: 'gpt-4o', latencyMs: 120 }));
    tracker.record(makeRecord({ model: 'gpt-4o-mini' }));
    const res = await request(app).get('/llmux/stats?model=gpt-4o&window=24h').expect(200);
    expect(res.body).toMatchObject({ model: 'gpt-4o', window: '24h', count: 1, avgLatencyMs: 120 });
  });

  it.each([
    ['/llmux/stats?window=2h', 'window'],
    ['/llmux/stats?window=', 'window'],
    ['/llmux/stats?model=', 'model'],
    ['/llmux/stats?model=a&model=b', 'model'],
    [`/llmux/stats?model=${'m'.repeat(300)}`, 'model'],
    ['/llmux/recent?n=0', 'n'],
    ['/llmux/recent?n=-3', 'n'],
    ['/llmux/recent?n=1.5', 'n'],
    ['/llmux/recent?n=ten', 'n'],
  ])('answers %s with a 400 naming %s', async (path, param) => {
    const { app } = setup(express);
    const res = await request(app).get(path).expect(400);
    expect(res.body).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', code: 'invalid_request', param },
    });
  });

  it('lists the most recent records, newest first, 50 by default', async () => {
    const { app, tracker } = setup(express);
    for (let i = 0; i < 60; i++) tracker.record(makeRecord({ id: `r${i}` }));
    const all = await request(app).get('/llmux/recent').expect(200);
    expect(all.body.object).toBe('list');
    expect(all.body.data).toHaveLength(50);
    expect(all.body.data[0]).toMatchObject({ id: 'r59', status: 200, keyId: 'key-1', model: 'gpt-4o-mini' });
    const two = await request(app).get('/llmux/recent?n=2').expect(200);
    expect(two.body.data.map((r: RequestRecord) => r.id)).toEqual(['r59', 'r58']);
  });

  it('cuts n to maxRecent', async () => {
    const { app, tracker } = setup(express, { maxRecent: 5 });
    for (let i = 0; i < 20; i++) tracker.record(makeRecord());
    const res = await request(app).get('/llmux/recent?n=100000').expect(200);
    expect(res.body.data).toHaveLength(5);
  });

  it('leaves its own requests out of the tracker', async () => {
    const { app, tracker } = setup(express);
    app.get('/v1/models', (_req, res) => {
      res.json({ data: [] });
    });
    await request(app).get('/v1/models').expect(200);
    await request(app).get('/llmux/stats').expect(200);
    await request(app).get('/llmux/recent').expect(200);
    await waitFor(() => tracker.size >= 1, { what: 'the request recorded' });
    await request(app).get('/llmux/stats').expect(200);
    expect(tracker.recent().map((r) => r.route)).toEqual(['/v1/models']);
  });
});

describe.each(expressVersions)('trackerRouter live feed on %s', (_label, express) => {
  it('sends a first snapshot, then an event for each finished request', async () => {
    const { app, tracker, router } = setup(express);
    const server = await listen(app);
    try {
      const client = sseClient(server.port);
      await waitFor(() => router.liveClients === 1 && client.text.includes('event: snapshot'), {
        what: 'the client connected with its snapshot',
      });
      expect(client.status).toBe(200);
      tracker.record(makeRecord({ id: 'live-1' }));
      tracker.record(makeRecord({ id: 'live-2', status: 500 }));
      await waitFor(() => occurrences(client.text, 'event: request') === 2, { what: 'two request events' });
      expect(eventsOf(client.text, 'request')).toMatchObject([
        { id: 'live-1', status: 200 },
        { id: 'live-2', status: 500 },
      ]);
      expect(eventsOf(client.text, 'snapshot')[0]).toMatchObject({ window: '15m', all: { model: '*' } });
    } finally {
      router.close();
      await server.close();
    }
  });

  it('drops a client that does not read while a reading one keeps receiving', async () => {
    const { app, tracker, router } = setup(express, { maxBufferedBytes: 16 * 1024 });
    const server = await listen(app);
    const slow = nonReadingClient(server.port);
    try {
      const fast = sseClient(server.port, { keepText: false });
      await waitFor(() => router.liveClients === 2, { what: 'two live clients' });
      const route = `/${'x'.repeat(8 * 1024)}`;
      let sent = 0;
      // The kernel's socket buffers take the first megabytes; then the slow client's backlog grows.
      while (router.droppedSlowClients === 0 && sent < 20_000) {
        tracker.record(makeRecord({ route }));
        sent++;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      expect(router.droppedSlowClients).toBe(1);
      expect(router.liveClients).toBe(1);
      for (let i = 0; i < 10; i++) {
        tracker.record(makeRecord({ route }));
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await waitFor(() => fast.requestEvents === sent + 10, {
        what: 'every request event at the fast client',
      });
      expect(fast.closed).toBe(false);
      expect(router.droppedSlowClients).toBe(1);
    } finally {
      slow.destroy();
      router.close();
      await server.close();
    }
  });

  it('refuses clients past maxLiveClients with a 503', async () => {
    const { app, router } = setup(express, { maxLiveClients: 2 });
    const server = await listen(app);
    try {
      sseClient(server.port);
      sseClient(server.port);
      await waitFor(() => router.liveClients === 2, { what: 'two live clients' });
      const third = sseClient(server.port);
      await waitFor(() => third.ended, { what: 'the third client turned away' });
      expect(third.status).toBe(503);
      expect(JSON.parse(third.text)).toEqual({
        error: {
          message: expect.any(String),
          type: 'overloaded_error',
          code: 'too_many_live_clients',
          param: null,
        },
      });
      expect(router.liveClients).toBe(2);
    } finally {
      router.close();
      await server.close();
    }
  });

  it('removes a client that leaves at once, and stops sending to it', async () => {
    const { app, tracker, router } = setup(express);
    const server = await listen(app);
    try {
      const leaving = sseClient(server.port);
      const staying = sseClient(server.port);
      await waitFor(() => router.liveClients === 2, { what: 'two live clients' });
      leaving.leave();
      await waitFor(() => router.liveClients === 1, { what: 'one live client' });
      tracker.record(makeRecord());
      await waitFor(() => occurrences(staying.text, 'event: request') === 1, {
        what: 'the request event at the staying client',
      });
      expect(router.droppedSlowClients).toBe(0);
    } finally {
      router.close();
      await server.close();
    }
  });
});

describe('trackerRouter live feed timer', () => {
  it('runs one shared timer only while clients are connected, and close() stops everything', async () => {
    // Sockets need real turns of the event loop; only the feed's timers are fake.
    jest.useFakeTimers({
      doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'queueMicrotask'],
      now: NOW_MS,
    });
    let router: TrackerRouter | undefined;
    let server: Awaited<ReturnType<typeof listen>> | undefined;
    try {
      const made = setup(expressVersions[0]![1], { heartbeatMs: 15_000, snapshotMs: 5_000 });
      router = made.router;
      server = await listen(made.app);
      expect(jest.getTimerCount()).toBe(0);

      const a = sseClient(server.port);
      const b = sseClient(server.port);
      await waitFor(() => router!.liveClients === 2 && occurrences(b.text, 'event: snapshot') === 1, {
        what: 'two live clients, b with its snapshot',
      });
      expect(jest.getTimerCount()).toBe(1);

      jest.advanceTimersByTime(15_000);
      await waitFor(() => b.text.includes(': heartbeat') && occurrences(b.text, 'event: snapshot') === 4, {
        what: 'a heartbeat and four snapshots at b',
      });
      expect(occurrences(a.text, ': heartbeat')).toBe(1);
      expect(jest.getTimerCount()).toBe(1);

      a.leave();
      await waitFor(() => router!.liveClients === 1, { what: 'one live client' });
      expect(jest.getTimerCount()).toBe(1);
      b.leave();
      await waitFor(() => router!.liveClients === 0, { what: 'no live client' });
      expect(jest.getTimerCount()).toBe(0);

      const c = sseClient(server.port);
      await waitFor(() => router!.liveClients === 1, { what: 'one live client' });
      expect(jest.getTimerCount()).toBe(1);
      router.close();
      router.close();
      expect(jest.getTimerCount()).toBe(0);
      expect(router.liveClients).toBe(0);
      await waitFor(() => c.ended, { what: 'c ended' });

      const late = sseClient(server.port);
      await waitFor(() => late.ended, { what: 'the late client ended' });
      expect(late.status).toBe(503);
      expect(JSON.parse(late.text).error.code).toBe('live_feed_closed');
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      router?.close();
      await server?.close();
      jest.useRealTimers();
    }
  });

  it('may be closed before any client came', () => {
    const router = trackerRouter(new RequestTracker());
    expect(() => {
      router.close();
      router.close();
    }).not.toThrow();
  });
});

describe('trackerRouter options', () => {
  it.each([
    [{ maxLiveClients: 0 }, /maxLiveClients must be a positive integer, got 0/],
    [{ heartbeatMs: -1 }, /heartbeatMs must be a positive integer/],
    [{ snapshotMs: 1.5 }, /snapshotMs must be a positive integer/],
    [{ maxBufferedBytes: Infinity }, /maxBufferedBytes must be a positive integer/],
    [{ maxRecent: '10' }, /maxRecent must be a positive integer/],
    [{ snapshotWindow: '2h' }, /snapshotWindow must be one of/],
  ])('throws a TypeError for %j', (options, message) => {
    const tracker = new RequestTracker();
    expect(() => trackerRouter(tracker, options as never)).toThrow(TypeError);
    expect(() => trackerRouter(tracker, options as never)).toThrow(message);
  });

  it('needs a RequestTracker', () => {
    expect(() => trackerRouter({} as never)).toThrow(/tracker must be a RequestTracker/);
  });
});
