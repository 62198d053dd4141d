// Slow clients (slowloris) against the full preset behind llmux's createServer: hundreds of connections
// dripping their headers or their body byte by byte neither starve normal requests nor outlive the
// configured timeouts, and leave no permit, reservation or socket behind. Node's server timeouts run on
// real time, so the timeouts here are small and every timing bound has slack for a loaded 2-core machine.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  createServer,
  hashApiKey,
  llmux,
  MemoryKeyStore,
  shutdown,
  upstreamPool,
  type LlmuxRouter,
  type UpstreamPool,
} from '../lib/index.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { waitFor } from './support/http.js';

/** Slow connections opened at once by each scenario; `SLOW_CLIENTS=1000` for a heavier run. */
const SLOW_CLIENTS = Number(process.env.SLOW_CLIENTS ?? 300);
/** Clients that finish one request on a kept-alive connection, then drip the next one. */
const KEEP_ALIVE_CLIENTS = Math.min(20, SLOW_CLIENTS);
/** Normal requests sent at once while the slow ones drip: half JSON, half streamed. */
const NORMAL_REQUESTS = 2;

const HEADERS_TIMEOUT_MS = 1_500;
// Longer than the headers timeout, so a cut tells which of the two timeouts fired.
const REQUEST_TIMEOUT_MS = 2_000;
const CHECK_INTERVAL_MS = 100;
// One byte per slow socket per tick: about 15 bytes before the headers timeout, of heads of ~185.
const DRIP_INTERVAL_MS = 100;
// No socket may be cut more than this before its timeout (clock and timer granularity).
const EARLY_SLACK_MS = 50;
// Event-loop lag a loaded machine may add after the timeout and one connection check.
const LATE_SLACK_MS = 2_000;

const KEY = 'sk-llmux-slow-clients-0001';
const CONTENT = 'pong';
const EXPECTED_CONTENT = 'pong pong pong ';

/** One slow connection, as its client sees it. */
interface SlowClient {
  readonly socket: net.Socket;
  /** The bytes dripped one per tick; the last is never sent, so the request never completes. */
  readonly payload: Buffer;
  offset: number;
  /** `performance.now()` when the first byte of the dripped request was written. */
  startedAt: number;
  /** When the client saw the connection close; undefined while it is open. */
  closedAt: number | undefined;
  received: string;
  readonly closed: Promise<void>;
}

interface Reply {
  status: number;
  body: string;
}

/** The soft limit on open files of this process on Linux; undefined elsewhere or when unlimited. */
function openFilesLimit(): number | undefined {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

function chatBody(stream: boolean): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    stream,
    max_tokens: 16,
    messages: [{ role: 'user', content: 'are you there?' }],
  });
}

/** The head of an authenticated chat completion whose body is `body`, blank line included. */
function chatHead(body: string): string {
  return (
    'POST /v1/chat/completions HTTP/1.1\r\n' +
    'Host: 127.0.0.1\r\n' +
    `Authorization: Bearer ${KEY}\r\n` +
    'Content-Type: application/json\r\n' +
    'User-Agent: slow-client/1.0\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`
  );
}

/** The text of a streamed chat completion's deltas; throws on a frame that is not JSON. */
function streamedContent(body: string): string {
  let content = '';
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const frame = JSON.parse(line.slice('data: '.length)) as {
      choices: { delta?: { content?: string } }[];
    };
    content += frame.choices[0]?.delta?.content ?? '';
  }
  return content;
}

/** Reads one HTTP/1.1 response (Content-Length or chunked) from a raw socket. */
function readResponse(socket: net.Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const done = (head: string, body: string): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ head, body });
    };
    const onData = (chunk: string): void => {
      buffer += chunk;
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffer.slice(0, end);
      const rest = buffer.slice(end + 4);
      const length = /^content-length: *(\d+)/im.exec(head);
      if (length !== null) {
        if (Buffer.byteLength(rest) >= Number(length[1])) done(head, rest);
      } else if (rest.endsWith('0\r\n\r\n')) {
        done(head, rest.replace(/(?:^|\r\n)[0-9a-f]+\r\n/gi, '').slice(0, -2));
      }
    };
    const onClose = (): void => reject(new Error(`connection closed mid-response: ${buffer}`));
    socket.setEncoding('utf8');
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

describe('slow clients against the full preset behind createServer', () => {
  let mock: MockUpstream;
  let pool: UpstreamPool;
  let store: MemoryKeyStore;
  let gateway: LlmuxRouter;
  let server: http.Server;
  let port: number;
  let baseline: string[];
  let drip: NodeJS.Timeout | undefined;
  const dripping = new Set<SlowClient>();
  const everyClient: net.Socket[] = [];
  const settles = new Map<string, number>();
  const logged: unknown[] = [];
  let admitted = 0;
  let normalSent = 0;

  beforeAll(async () => {
    if (!Number.isSafeInteger(SLOW_CLIENTS) || SLOW_CLIENTS < 1) {
      throw new TypeError(`SLOW_CLIENTS must be a positive integer, got ${process.env.SLOW_CLIENTS}`);
    }
    // Both ends of every slow connection live in this process: two descriptors each.
    const limit = openFilesLimit();
    const needed = 2 * SLOW_CLIENTS + 256;
    if (limit !== undefined && limit < needed) {
      throw new Error(
        `SLOW_CLIENTS=${SLOW_CLIENTS} needs about ${needed} open files, but ulimit -n is ${limit}`,
      );
    }
    baseline = process.getActiveResourcesInfo();

    mock = await createMockUpstream({ maxRecorded: 0 });
    mock.setBehaviour({ content: CONTENT, chunks: 3 });
    store = new MemoryKeyStore();
    await store.createKey({ id: 'slow', name: 'slow', hash: hashApiKey(KEY), prefix: 'sk-llmux-slow' });
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
    pool = upstreamPool({ upstreams: [{ url: `${mock.url}/v1`, apiKey: 'sk-mock', name: 'mock' }] });
    gateway = llmux({
      upstream: pool,
      auth: { store },
      // A small gate: a slow client holding a permit would queue every normal request behind it.
      gate: { max: 2, maxQueue: 64, queueTimeoutMs: 5_000 },
      logger: { error: (...args: unknown[]) => void logged.push(args) },
    });
    const app = express();
    app.use(gateway);
    server = createServer(app, {
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      connectionsCheckingIntervalMs: CHECK_INTERVAL_MS,
      keepAliveTimeoutMs: 10_000,
    });
    await new Promise<void>((resolve) =>
      server.listen({ port: 0, host: '127.0.0.1', backlog: 1_024 }, resolve),
    );
    port = (server.address() as AddressInfo).port;

    // One timer drips a byte into every slow socket per tick, never the last byte of its payload.
    drip = setInterval(() => {
      for (const client of dripping) {
        if (
          client.socket.destroyed ||
          !client.socket.writable ||
          client.offset >= client.payload.length - 1
        ) {
          dripping.delete(client);
        } else {
          client.socket.write(client.payload.subarray(client.offset, ++client.offset));
        }
      }
    }, DRIP_INTERVAL_MS);

    // Warm the relay (JIT, upstream connection) so the first measured request is not a cold start.
    await expect(chat(false)).resolves.toMatchObject({ status: 200 });
  });

  afterAll(async () => {
    clearInterval(drip);
    dripping.clear();
    for (const socket of everyClient) socket.destroy();
    await shutdown(server, [gateway, mock], { timeoutMs: 1_000 });
  });

  /** A normal authenticated chat completion over a fresh connection. */
  function chat(stream: boolean): Promise<Reply> {
    normalSent++;
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/chat/completions',
          agent: false,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        },
        (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          response.on('error', reject);
        },
      );
      request.on('error', reject);
      request.end(chatBody(stream));
    });
  }

  /** Sends NORMAL_REQUESTS chat completions at once and checks every answer. */
  async function normalRound(): Promise<void> {
    const streams = Array.from({ length: NORMAL_REQUESTS }, (_, i) => i % 2 === 1);
    const replies = await Promise.all(streams.map((stream) => chat(stream)));
    replies.forEach((reply, i) => {
      expect(reply.status).toBe(200);
      if (streams[i]) {
        expect(reply.body.endsWith('data: [DONE]\n\n')).toBe(true);
        expect(streamedContent(reply.body)).toBe(EXPECTED_CONTENT);
      } else {
        const json = JSON.parse(reply.body) as { choices: { message: { content: string } }[] };
        expect(json.choices[0]?.message.content).toBe(EXPECTED_CONTENT);
      }
    });
  }

  function connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
      everyClient.push(socket);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  /** Writes `prefix` at once, then drips `payload` from now on; the clock starts now. */
  function startDripping(socket: net.Socket, prefix: string, payload: string): SlowClient {
    const client: SlowClient = {
      socket,
      payload: Buffer.from(payload),
      offset: 1,
      startedAt: 0,
      closedAt: undefined,
      received: '',
      closed: new Promise((resolve) => socket.once('close', () => resolve())),
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (client.received += chunk));
    // EPIPE or ECONNRESET when a byte is dripped after the server closed: the close is what counts.
    socket.on('error', () => undefined);
    socket.once('close', () => (client.closedAt = performance.now()));
    socket.write(prefix + payload.charAt(0));
    client.startedAt = performance.now();
    dripping.add(client);
    return client;
  }

  /** Resolves once every client closed, or at `deadlineMs` from now, whichever is first. */
  async function allClosedOrDeadline(clients: readonly SlowClient[], deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(clients.map((client) => client.closed)),
      new Promise((resolve) => (timer = setTimeout(resolve, deadlineMs))),
    ]);
    clearTimeout(timer);
  }

  const openCount = (clients: readonly SlowClient[]): number =>
    clients.filter((client) => client.closedAt === undefined).length;

  /**
   * Every client was closed by the server with Node's bare 408, not before `timeoutMs` after its
   * first dripped byte and within one connection check plus slack after it.
   */
  function expectCutWith408(clients: readonly SlowClient[], timeoutMs: number): void {
    expect(openCount(clients)).toBe(0);
    const lived = clients.map((client) => (client.closedAt ?? Number.POSITIVE_INFINITY) - client.startedAt);
    expect(Math.min(...lived)).toBeGreaterThanOrEqual(timeoutMs - EARLY_SLACK_MS);
    expect(Math.max(...lived)).toBeLessThanOrEqual(timeoutMs + CHECK_INTERVAL_MS + LATE_SLACK_MS);
    for (const client of clients) {
      expect(client.received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\nConnection: close\r\n\r\n$/);
    }
  }

  it(`serves JSON and streamed completions while ${SLOW_CLIENTS} clients drip their headers, then cuts each of them with a 408 after headersTimeoutMs`, async () => {
    const sockets = await Promise.all(Array.from({ length: SLOW_CLIENTS }, connect));
    const body = chatBody(false);
    // The head without its blank line: even a server that never timed out would never see it end.
    const head = chatHead(body).slice(0, -2);
    const clients = sockets.map((socket) => startDripping(socket, '', head));
    // Every slow client is dripping (the drip timer has run over all of them) before the normal round.
    await waitFor(() => clients.every((client) => client.offset > 1), { what: 'the first drip' });

    await normalRound();
    const openWhenServed = openCount(clients);
    await allClosedOrDeadline(clients, HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + LATE_SLACK_MS);

    // The normal requests were answered alongside the slow ones, not after them: when the last
    // answer arrived, most slow clients were still connected (a starved machine may be slow enough
    // for the first connection checks to cut a few before it).
    expect(openWhenServed).toBeGreaterThan(SLOW_CLIENTS / 2);
    // Cut by the headers timeout; Node answers 408 and closes while the client is still dripping
    // (a byte dripped after the close may draw a reset, but only once the 408 was received).
    expectCutWith408(clients, HEADERS_TIMEOUT_MS);
    for (const client of clients) expect(client.offset).toBeLessThan(client.payload.length - 1);
    // The slow heads never reached the app: only the normal requests were admitted.
    expect(admitted).toBe(normalSent);
  });

  it(`serves completions while ${SLOW_CLIENTS} clients drip their bodies, then cuts each of them with a 408 after requestTimeoutMs, holding no gate permit or key slot meanwhile`, async () => {
    const sockets = await Promise.all(Array.from({ length: SLOW_CLIENTS }, connect));
    const body = chatBody(false);
    const clients = sockets.map((socket) => startDripping(socket, chatHead(body), body));
    // Every slow client is dripping (the drip timer has run over all of them) before the normal round.
    await waitFor(() => clients.every((client) => client.offset > 1), { what: 'the first drip' });

    // The bodies are read by bodyLimit, before keyAuth and the gate: the slow ones hold neither.
    const gateWhileDripping = gateway.pieces.gate!.stats();
    await normalRound();
    const openWhenServed = openCount(clients);
    await allClosedOrDeadline(clients, REQUEST_TIMEOUT_MS + CHECK_INTERVAL_MS + LATE_SLACK_MS);

    expect(gateWhileDripping).toEqual({ inFlight: 0, queued: 0, keys: 0 });
    expect(openWhenServed).toBeGreaterThan(SLOW_CLIENTS / 2);
    // Cut by the request timeout, which is longer than the headers timeout the heads did beat;
    // llmux had not answered (it was still reading the body), so Node's own 408 went out.
    expectCutWith408(clients, REQUEST_TIMEOUT_MS);
    expect(admitted).toBe(normalSent);
    expect(logged).toEqual([]);
  });

  it(`cuts ${KEEP_ALIVE_CLIENTS} kept-alive connections that drip their second request after headersTimeoutMs, not after keepAliveTimeoutMs`, async () => {
    const sockets = await Promise.all(Array.from({ length: KEEP_ALIVE_CLIENTS }, connect));
    const body = chatBody(false);
    const firsts = await Promise.all(
      sockets.map((socket) => {
        const response = readResponse(socket);
        normalSent++;
        socket.write(chatHead(body) + body);
        return response;
      }),
    );
    for (const first of firsts) {
      expect(first.head).toMatch(/^HTTP\/1\.1 200 [^]*^Connection: keep-alive$/im);
      expect(JSON.parse(first.body)).toMatchObject({ choices: [{ message: { content: EXPECTED_CONTENT } }] });
    }

    const clients = sockets.map((socket) => startDripping(socket, '', chatHead(body).slice(0, -2)));
    await allClosedOrDeadline(clients, HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + LATE_SLACK_MS);

    expectCutWith408(clients, HEADERS_TIMEOUT_MS);
  });

  it('leaves no permit, reservation, upstream request, logged error or socket behind after shutdown', async () => {
    // Settlement runs on each response's 'close': give the last ones a moment, bounded.
    await waitFor(() => [...settles.values()].every((count) => count > 0), {
      what: 'every admitted request to be settled',
      detail: () => [...settles.values()],
    });
    expect(admitted).toBe(normalSent);
    expect(settles.size).toBe(admitted);
    expect([...settles.values()].every((count) => count === 1)).toBe(true);
    expect(gateway.pieces.gate!.stats()).toEqual({ inFlight: 0, queued: 0, keys: 0 });
    expect(pool.inFlightTotal()).toBe(0);
    expect(logged).toEqual([]);

    const result = await shutdown(server, [gateway, mock], { timeoutMs: 1_000 });

    expect(result).toEqual({ drained: true, forcedConnections: 0, errors: [] });
    // Back to what the worker had before the file started (a diff, not an async_hooks watch: hooks
    // would slow the hundreds of sockets above); Node reports closed handles a turn or more late.
    const count = (list: string[], kind: string): number => list.filter((type) => type === kind).length;
    const above = () => {
      const now = process.getActiveResourcesInfo();
      return ['TCPSocketWrap', 'TCPServerWrap'].filter((kind) => count(now, kind) > count(baseline, kind));
    };
    await waitFor(() => above().length === 0, {
      what: 'no socket or server beyond those open before the file',
      detail: above,
    });
  });
});
