// Regressions of the hot-path work: the one-layer preset must route as Express did (absolute-form
// targets included), and the batched SSE relay must keep event order, retry rules and backpressure.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { llmux } from '../lib/preset.js';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay } from '../lib/middleware/stream-relay.js';
import { retry } from '../lib/retry/policy.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

interface Listening {
  port: number;
  url: string;
  close(): Promise<void>;
}

async function listen(handler: http.RequestListener): Promise<Listening> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A raw SSE upstream: `script` writes the body bytes exactly as the test wants them cut. */
async function rawUpstream(
  script: (res: http.ServerResponse, socket: net.Socket, seq: number) => void | Promise<void>,
): Promise<Listening & { requests(): number }> {
  let requests = 0;
  const server = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      res.socket!.setNoDelay(true);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      void script(res, res.socket!, requests);
    });
  });
  return { ...server, requests: () => requests };
}

/** A stream relay behind bodyLimit, retrying up to 3 times with almost no backoff. */
/** One streamed request through a fresh relay in front of `upstream`; everything closed after. */
async function streamOnce(upstream: Listening): Promise<Received> {
  const app = await relayApp(upstream.url);
  try {
    return await postStream(app.port);
  } finally {
    await app.closeRelay();
    await app.close();
    await upstream.close();
  }
}

async function relayApp(
  upstreamUrl: string,
  before?: express.RequestHandler,
): Promise<Listening & { closeRelay(): Promise<void> }> {
  const relay = streamRelay({
    upstream: `${upstreamUrl}/v1`,
    retry: retry({ attempts: 3, baseDelayMs: 1, maxDelayMs: 1 }),
  });
  const app = express();
  if (before !== undefined) app.use(before);
  app.post('/v1/chat/completions', bodyLimit(), relay);
  const server = await listen(app);
  return { ...server, closeRelay: () => relay.close() };
}

interface Received {
  status: number;
  text: string;
}

/** POSTs a streamed chat completion; `onResponse` may pause the response before it is read. */
function postStream(
  port: number,
  onResponse?: (res: http.IncomingMessage) => void | Promise<void>,
): Promise<Received> {
  const body = JSON.stringify(chat({ stream: true }));
  return new Promise<Received>((resolve, reject) => {
    const req = http.request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
        if (onResponse !== undefined) void onResponse(res);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface SseEvent {
  event: string;
  data: string;
}

/** The events a WHATWG EventSource would dispatch (LF, CRLF and CR line endings). */
function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  let data: string[] = [];
  let event = '';
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (data.length > 0) events.push({ event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') data.push(value);
    else if (name === 'event') event = value;
  }
  return events;
}

const chunkFrame = (content: string) =>
  `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
const contentOf = (e: SseEvent) =>
  (JSON.parse(e.data) as { choices: { delta: { content: string } }[] }).choices[0]!.delta.content;

async function waitFor(condition: () => boolean, ms = 2000): Promise<boolean> {
  for (let i = 0; i < ms / 5 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  return condition();
}

describe('preset: one router layer', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
  });

  // REGRESSION: chainFor() matches the raw req.url, while Express matches parseurl(req).pathname.
  // A request in absolute form (RFC 9112 3.2.2: a server MUST accept it; clients sending through
  // an HTTP proxy setting use it) was relayed at f2591c4; now it falls through to the host (404).
  it('relays a request whose target is in absolute form, as Express routing did', async () => {
    const gateway = llmux({ upstream: `${mock.url}/v1`, auth: false });
    const app = express();
    app.use(gateway);
    const server = await listen(app);
    const body = JSON.stringify(chat());
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1');
      let out = '';
      socket.on('data', (d: Buffer) => (out += d.toString('utf8')));
      socket.on('error', reject);
      socket.on('close', () => resolve(out));
      socket.write(
        `POST ${server.url}/v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `Connection: close\r\n\r\n${body}`,
      );
    });
    await gateway.close();
    await server.close();
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(mock.requests.at(-1)?.path).toBe('/v1/chat/completions?x=1');
  });
});

describe('SSE relay: batched writes keep order, backpressure and the retry rule', () => {
  it('relays the events that came in one read with an error frame before that frame, and does not retry', async () => {
    const upstream = await rawUpstream((res) => {
      res.end(
        chunkFrame('a') +
          chunkFrame('b') +
          chunkFrame('c') +
          'data: {"error":{"message":"boom","type":"server_error","code":"overloaded"}}\n\n',
      );
    });
    const got = await streamOnce(upstream);
    expect(got.status).toBe(200);
    const events = parseSse(got.text);
    expect(events.slice(0, 3).map(contentOf)).toEqual(['a', 'b', 'c']);
    expect(events).toHaveLength(4);
    expect(events[3]!.event).toBe('error');
    expect(upstream.requests()).toBe(1);
  });

  it('ends a stream cut right after relayed events with a truncation frame after them, never a retry', async () => {
    const events3 = chunkFrame('a') + chunkFrame('b') + chunkFrame('c');
    const cases: [string, (res: http.ServerResponse, socket: net.Socket) => void, string][] = [
      [
        // The connection dies right after three events (written on the next tick: Node corks).
        'reset',
        (res, socket) => {
          res.write(events3);
          setImmediate(() => socket.destroy());
        },
        'upstream_stream_truncated',
      ],
      [
        // One TCP write: three events, then a malformed chunk the HTTP parser fails on, so the
        // events and the failure reach the relay in the same read.
        'same read',
        (_res, socket) => {
          const body = Buffer.from(events3);
          socket.write(
            Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\nzz\r\n')]),
          );
        },
        'upstream_stream_truncated',
      ],
      ['clean end without [DONE]', (res) => res.end(events3), 'upstream_stream_truncated'],
    ];
    for (const [label, script, code] of cases) {
      const upstream = await rawUpstream((res, socket) => script(res, socket));
      const got = await streamOnce(upstream);
      expect([label, got.status]).toEqual([label, 200]);
      const events = parseSse(got.text);
      expect([label, events.slice(0, -1).map(contentOf)]).toEqual([label, ['a', 'b', 'c']]);
      expect([label, events.at(-1)!.event, events.at(-1)!.data]).toEqual([
        label,
        'error',
        expect.stringContaining(`"code":"${code}"`),
      ]);
      expect([label, upstream.requests()]).toEqual([label, 1]);
    }
  });

  it('still retries an attempt whose only event was an error frame (nothing reached the client)', async () => {
    const upstream = await rawUpstream((res, _socket, seq) => {
      if (seq === 1) res.end('data: {"error":{"message":"busy","type":"server_error","code":"x"}}\n\n');
      else res.end(chunkFrame('ok') + 'data: [DONE]\n\n');
    });
    const got = await streamOnce(upstream);
    expect(got.status).toBe(200);
    const events = parseSse(got.text);
    expect(events.map((e) => e.data)).toEqual([expect.stringContaining('"ok"'), '[DONE]']);
    expect(upstream.requests()).toBe(2);
  });

  it('relays every event for LF, CRLF and CR line endings cut at every byte, hiding the usage chunk between them', async () => {
    const usage = `data: ${JSON.stringify({
      object: 'chat.completion.chunk',
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    })}\n\n`;
    const stream =
      ': keep-alive\n\n' +
      chunkFrame('a') +
      'event: note\ndata: line1\ndata: line2\n\n' +
      usage +
      chunkFrame('b') +
      'data: [DONE]\n\n';
    const expected = [
      { event: 'message', data: expect.stringContaining('"a"') },
      { event: 'note', data: 'line1\nline2' },
      { event: 'message', data: expect.stringContaining('"b"') },
      { event: 'message', data: '[DONE]' },
    ];
    for (const eol of ['\n', '\r\n', '\r']) {
      const bytes = Buffer.from(stream.replace(/\n/g, eol), 'utf8');
      for (const byteByByte of [true, false]) {
        const upstream = await rawUpstream(async (res) => {
          if (!byteByByte) return void res.end(bytes);
          for (let i = 0; i < bytes.length; i++) {
            res.write(bytes.subarray(i, i + 1));
            await new Promise((r) => setImmediate(r));
          }
          res.end();
        });
        const got = await streamOnce(upstream);
        expect([JSON.stringify(eol), byteByByte, got.status]).toEqual([JSON.stringify(eol), byteByByte, 200]);
        expect(got.text).not.toContain('usage');
        expect(parseSse(got.text)).toEqual(expected);
      }
    }
  });

  it('keeps a slow client in step: upstream paused, relay buffer bounded, all 2,000 events in order', async () => {
    const COUNT = 2000;
    const pad = 'x'.repeat(4000);
    let blocked = false;
    let written = 0;
    const upstream = await rawUpstream(async (res) => {
      for (let i = 0; i < COUNT; i++) {
        written++;
        if (!res.write(chunkFrame(`${i}:${pad}`))) {
          blocked = true;
          await new Promise((r) => res.once('drain', r));
          blocked = false;
        }
      }
      res.end('data: [DONE]\n\n');
    });
    let maxBuffered = 0;
    const app = await relayApp(upstream.url, (_req, res, next) => {
      const write = res.write.bind(res) as (...args: unknown[]) => boolean;
      res.write = ((...args: unknown[]) => {
        const ok = write(...args);
        maxBuffered = Math.max(maxBuffered, res.writableLength);
        return ok;
      }) as typeof res.write;
      next();
    });
    let writtenWhilePaused = 0;
    let upstreamWasHeldBack = false;
    const got = await postStream(app.port, async (res) => {
      res.pause();
      // The client reads nothing until the upstream is held back by the relay's pause.
      upstreamWasHeldBack = await waitFor(() => blocked, 2000);
      writtenWhilePaused = written;
      res.resume();
    });
    await app.closeRelay();
    await app.close();
    await upstream.close();
    expect(upstreamWasHeldBack).toBe(true);
    expect(writtenWhilePaused).toBeLessThan(COUNT);
    expect(maxBuffered).toBeLessThan(1_048_576);
    expect(got.status).toBe(200);
    const events = parseSse(got.text);
    expect(events).toHaveLength(COUNT + 1);
    const order = events.slice(0, COUNT).map((e) => Number(contentOf(e).split(':')[0]));
    expect(order).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(events[COUNT]!.data).toBe('[DONE]');
  });
});
