// The batched SSE relay: events that arrive in one upstream read are written together, yet keep
// their order, the rule that a stream which reached the client is never retried, and backpressure
// towards a slow client. The upstreams are raw node:http servers that cut the bytes exactly as a
// test wants them.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import type net from 'node:net';
import { bodyLimit } from '../lib/middleware/body-limit.js';
import { streamRelay } from '../lib/middleware/stream-relay.js';
import { retry } from '../lib/retry/policy.js';
import { chat, listen, sseEvents, waitFor, type Listening, type SseEvent } from './support/http.js';

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

/** A stream relay behind bodyLimit, retrying up to 3 times with almost no backoff. */
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

const chunkFrame = (content: string) =>
  `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
const contentOf = (e: SseEvent) =>
  (JSON.parse(e.data) as { choices: { delta: { content: string } }[] }).choices[0]!.delta.content;

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
    const events = sseEvents(got.text);
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
      const events = sseEvents(got.text);
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
    const events = sseEvents(got.text);
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
        expect(sseEvents(got.text)).toEqual(expected);
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
    let heldBack: Promise<void> | undefined;
    let got: Received;
    try {
      got = await postStream(app.port, (res) => {
        res.pause();
        // The client reads nothing until the upstream is held back by the relay's pause.
        heldBack = waitFor(() => blocked, { what: 'the upstream to be held back by the relay' })
          .then(() => {
            writtenWhilePaused = written;
          })
          .finally(() => res.resume());
      });
      await heldBack;
    } finally {
      await app.closeRelay();
      await app.close();
      await upstream.close();
    }
    expect(writtenWhilePaused).toBeLessThan(COUNT);
    expect(maxBuffered).toBeLessThan(1_048_576);
    expect(got.status).toBe(200);
    const events = sseEvents(got.text);
    expect(events).toHaveLength(COUNT + 1);
    const order = events.slice(0, COUNT).map((e) => Number(contentOf(e).split(':')[0]));
    expect(order).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(events[COUNT]!.data).toBe('[DONE]');
  });
});
