// What a hostile client or upstream cannot do to the relay: hold a permit by not reading, keep a
// request open by trickling a JSON body, or pass a non-object off as a success.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { concurrencyGate, getContext, streamRelay, type RequestContext } from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

let mock: MockUpstream;
const closers: (() => Promise<unknown> | void)[] = [];
beforeAll(async () => {
  mock = await createMockUpstream();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  mock.reset();
});
afterAll(async () => {
  await mock.close();
});

/** A relay behind a gate of one permit, on a real server; records every request's context. */
async function gatedRelay(stallMs: number, maxEventBytes?: number) {
  const contexts: RequestContext[] = [];
  const gate = concurrencyGate({ max: 1, maxQueue: 4, queueTimeoutMs: 10_000 });
  const relay = streamRelay({ upstream: `${mock.url}/v1`, clientStallTimeoutMs: stallMs, maxEventBytes });
  const app = express();
  app.use((_req, res, next) => {
    res.once('close', () => contexts.push(getContext(res)!));
    next();
  });
  app.post('/v1/chat/completions', gate, relay);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () => relay.close(),
    () => gate.close(),
    () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  );
  return { port: (server.address() as AddressInfo).port, contexts, gate };
}

/** Sends a request and never reads its answer: resolves once the answer's headers came. */
function neverRead(port: number, body: unknown): Promise<http.ClientRequest> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        res.pause();
        resolve(req);
      },
    );
    req.on('error', () => undefined);
    req.end(JSON.stringify(body));
  });
}

describe('a client that stops reading', () => {
  it('is cut after clientStallTimeoutMs on a stream, freeing its gate permit and the upstream', async () => {
    const { port, contexts } = await gatedRelay(200);
    // Far more than loopback socket buffers hold, so the relay has to pause for the client.
    mock.enqueue({ chunks: 4_000, content: 'x'.repeat(16_384) });
    await neverRead(port, chat({ stream: true }));
    // The one permit is held by the stalled reader; this request waits for it and is served.
    const served = await request(`http://127.0.0.1:${port}`).post('/v1/chat/completions').send(chat());
    expect(served.status).toBe(200);
    const stalled = await mock.waitForSettled(2);
    expect(stalled[0]!.aborted).toBe(true);
    expect(contexts.map((ctx) => ctx.errorCode)).toContain('client_stalled');
  });

  it('is cut after clientStallTimeoutMs when its stream ended with an error frame it never read', async () => {
    // One event larger than loopback socket buffers, and the upstream's error right behind it:
    // the relay writes the event, ends the stream with an error frame, and the client reads none.
    const { port, contexts } = await gatedRelay(200, 32 * 1_048_576);
    const big = JSON.stringify({ choices: [{ index: 0, delta: { content: 'z'.repeat(16 * 1_048_576) } }] });
    mock.enqueue({
      headers: { 'content-type': 'text/event-stream' },
      rawBody: `data: ${big}\n\ndata: ${JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } })}\n\n`,
    });
    await neverRead(port, chat({ stream: true }));
    // The one permit is held by the reader that stopped; this request waits for it and is served.
    const served = await request(`http://127.0.0.1:${port}`).post('/v1/chat/completions').send(chat());
    expect(served.status).toBe(200);
    expect(contexts.map((ctx) => ctx.errorCode)).toContain('client_stalled');
  }, 60_000); // a 16 MiB event to write through: slow on a loaded machine

  it('is cut when it never reads a JSON answer, freeing its gate permit', async () => {
    const { port, contexts } = await gatedRelay(200);
    mock.enqueue({
      body: { id: 'big', object: 'chat.completion', choices: [], padding: 'y'.repeat(12_000_000) },
    });
    await neverRead(port, chat());
    const served = await request(`http://127.0.0.1:${port}`).post('/v1/chat/completions').send(chat());
    expect(served.status).toBe(200);
    expect(contexts.map((ctx) => ctx.errorCode)).toContain('client_stalled');
  });

  it('is left alone while it keeps reading, however slowly', async () => {
    const { port } = await gatedRelay(500);
    mock.enqueue({ chunks: 20, chunkDelayMs: 30 });
    const res = await request(`http://127.0.0.1:${port}`)
      .post('/v1/chat/completions')
      .send(chat({ stream: true }));
    expect(res.text).toContain('data: [DONE]');
    expect(res.text).not.toContain('client_stalled');
  });
});

describe('an upstream that trickles a JSON answer', () => {
  it('is cut at responseTimeoutMs with 504 upstream_timeout, though no gap reaches idleTimeoutMs', async () => {
    const timers = new Set<NodeJS.Timeout>();
    const trickler = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const timer = setInterval(() => res.write(' '), 40);
      timers.add(timer);
      res.once('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickler.listen(0, '127.0.0.1', resolve));
    closers.push(() => {
      for (const timer of timers) clearInterval(timer);
      trickler.closeAllConnections();
      return new Promise((resolve) => trickler.close(resolve));
    });
    const relay = streamRelay({
      upstream: `http://127.0.0.1:${(trickler.address() as AddressInfo).port}/v1`,
      idleTimeoutMs: 1_000,
      responseTimeoutMs: 300,
    });
    closers.push(() => relay.close());
    const res = await request(express().post('/v1/chat/completions', relay))
      .post('/v1/chat/completions')
      .send(chat());
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    expect(res.body.error.message).toContain('response');
  });
});

describe('an upstream JSON answer that is not an object', () => {
  it.each([[[1, 2, 3]], ['"text"'], [42], [null]])(
    '%j with 200 is a 502 upstream_decode_error, never a success',
    async (body) => {
      const relay = streamRelay({ upstream: `${mock.url}/v1` });
      closers.push(() => relay.close());
      mock.enqueue(typeof body === 'string' ? { rawBody: body } : { body });
      const res = await request(express().post('/v1/chat/completions', relay))
        .post('/v1/chat/completions')
        .send(chat());
      expect(res.status).toBe(502);
      expect(res.body.error.code).toBe('upstream_decode_error');
    },
  );
});
