// Chaos: a few thousand requests through the full preset against two mock upstreams scripted to
// fail at random while clients leave at random points; afterwards nothing is held, leaked or
// billed twice. Replay a failing run with CHAOS_SEED (and CHAOS_REQUESTS, CHAOS_ABORT).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import http from 'node:http';
import { listen, waitFor } from './support/http.js';
import { realProcess } from './support/real-process.js';
import {
  createMetrics,
  createServer,
  hashApiKey,
  llmux,
  MemoryKeyStore,
  retry,
  shutdown,
  upstreamPool,
  type LlmuxMetrics,
  type LlmuxRouter,
  type Settlement,
  type ShutdownResult,
  type UpstreamPool,
} from '../lib/index.js';
import { createMockUpstream, type MockBehaviour, type MockUpstream } from '../lib/testing/index.js';

const REQUESTS = Number(process.env.CHAOS_REQUESTS ?? 2_000);
const SEED = Number(process.env.CHAOS_SEED ?? 20261122);
const ABORT_RATE = Number(process.env.CHAOS_ABORT ?? 0.15);
const CONCURRENCY = 32;
/** Alone the run takes a few seconds; this leaves room for a machine busy with other work. */
const TEST_TIMEOUT_MS = 60_000;
/**
 * The relay gives up on an upstream's headers after this (undici's timers tick every ~0.5 s, so
 * up to ~2 s): room for a healthy answer on a loaded machine. `slow_first_byte` never answers
 * before the relay gives up, so neither outcome depends on a race between the two.
 */
const FIRST_BYTE_TIMEOUT_MS = 1_500;
const SLOW_FIRST_BYTE_MS = 60_000;
/** 429s carry either a hint short enough to retry on, or one above `maxRetryAfterMs` (passed on). */
const MAX_RETRY_AFTER_MS = 200;
const MODEL = 'gpt-4o-mini';

/** A small deterministic generator, so a failing run can be replayed with CHAOS_SEED. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** What the mock does to one upstream attempt. The SSE-only faults are plain answers to JSON requests. */
type Fault =
  | 'rate_limited'
  | 'server_error'
  | 'reset_before_headers'
  | 'reset_mid_stream'
  | 'slow_first_byte'
  | 'truncated_sse'
  | 'ok';
const FAULTS: readonly Fault[] = [
  'rate_limited',
  'server_error',
  'reset_before_headers',
  'reset_mid_stream',
  'slow_first_byte',
  'truncated_sse',
];
const SSE_ONLY = new Set<Fault>(['reset_mid_stream', 'truncated_sse']);

/** One upstream attempt as the mock scripted it. */
interface Attempt {
  fault: Fault;
  behaviour: MockBehaviour;
  /** Content chunks (= completion tokens) the attempt would produce if it ran to the end. */
  chunks: number;
}

/** When the client leaves: never, on a timer, or as soon as the first body byte arrives. */
type AbortPlan = { kind: 'none' } | { kind: 'timer'; afterMs: number } | { kind: 'first-byte' };

/** How the exchange ended on the client side. */
type Outcome =
  | { kind: 'response'; status: number; headers: http.IncomingHttpHeaders; body: string }
  /** The client left on purpose; `headersReceived` tells before or after the response headers. */
  | { kind: 'aborted'; headersReceived: boolean }
  /** The connection failed without the client leaving: never acceptable. */
  | { kind: 'dropped'; error: string };

/** Everything known about one client request, joined by its id (x-request-id, key id). */
interface Trace {
  readonly id: string;
  readonly key: string;
  readonly stream: boolean;
  readonly abort: AbortPlan;
  /** Every attempt gets the first attempt's fault, so a fault also survives the retry. */
  readonly sticky: boolean;
  readonly attempts: Attempt[];
  seenByGateway: boolean;
  outcome: Outcome | undefined;
}

interface Settled {
  readonly keyId: string;
  readonly settlement: Settlement;
}

/** The result a client must see when the last attempt of its request had this fault. */
function expectedResult(fault: Fault, stream: boolean): { status: number; code: string | undefined } {
  if (SSE_ONLY.has(fault) && !stream) fault = 'ok';
  switch (fault) {
    case 'ok':
      return { status: 200, code: undefined };
    case 'rate_limited':
      return { status: 429, code: 'rate_limited' };
    case 'server_error':
      return { status: 502, code: 'upstream_error' };
    case 'reset_before_headers':
      return { status: 502, code: 'upstream_unreachable' };
    case 'slow_first_byte':
      return { status: 504, code: 'upstream_timeout' };
    case 'reset_mid_stream':
    case 'truncated_sse':
      // Headers and some chunks went out: the stream ends with an SSE error frame.
      return { status: 200, code: 'upstream_stream_truncated' };
  }
}

function isOpenAiError(value: unknown): boolean {
  const error = (value as { error?: Record<string, unknown> } | null)?.error;
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof error.message === 'string' &&
    typeof error.type === 'string' &&
    typeof error.code === 'string' &&
    'param' in error
  );
}

/** The SSE frames of a body, split on blank lines. */
function sseFrames(body: string): string[] {
  return body.split('\n\n').filter((frame) => frame.length > 0);
}

function countByKind(list: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of list) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/** Kinds of active resources of which there are more now than in `baseline`, with both counts. */
function resourcesAbove(baseline: readonly string[]): Record<string, [before: number, now: number]> {
  const before = countByKind(baseline);
  const above: Record<string, [number, number]> = {};
  for (const [kind, now] of countByKind(process.getActiveResourcesInfo())) {
    const was = before.get(kind) ?? 0;
    if (now > was) above[kind] = [was, now];
  }
  return above;
}

/**
 * Records every timer made through this context's `setTimeout`/`setInterval` (llmux, undici and
 * the mocks use them), so a pending one is found even when it is unref'd and so invisible to
 * `process.getActiveResourcesInfo()`.
 */
function trackTimers(): { pending(): string[]; restore(): void } {
  const timers = globalThis as unknown as Record<
    'setTimeout' | 'setInterval',
    (...args: unknown[]) => unknown
  >;
  const original = { setTimeout: timers.setTimeout, setInterval: timers.setInterval };
  const made = new Map<NodeJS.Timeout, Error>();
  for (const name of ['setTimeout', 'setInterval'] as const) {
    timers[name] = (...args: unknown[]) => {
      const timer = original[name](...args) as NodeJS.Timeout;
      made.set(
        timer,
        new Error(`${name}(${String((args[0] as { name?: string })?.name)}, ${String(args[1])})`),
      );
      return timer;
    };
  }
  return {
    // Node marks a timer that fired (and was not refreshed) or was cleared as `_destroyed`.
    pending: () =>
      [...made]
        .filter(([timer]) => !(timer as unknown as { _destroyed: boolean })._destroyed)
        .map(([timer, origin]) => `${timer.hasRef() ? 'ref' : 'unref'} ${origin.stack ?? origin.message}`),
    restore: () => Object.assign(timers, original),
  };
}

describe('chaos: the full preset against a failing upstream and leaving clients', () => {
  const random = rng(SEED);
  const crashes: string[] = [];
  const onUncaught = (err: unknown) => void crashes.push(`uncaughtException: ${String(err)}`);
  const onUnhandled = (reason: unknown) => void crashes.push(`unhandledRejection: ${String(reason)}`);
  const logged: string[] = [];
  const logger = { error: (message: string) => void logged.push(message) };

  const traces: Trace[] = [];
  const traceById = new Map<string, Trace>();
  /** Faults handed to an attempt that can show them (SSE-only faults count on streams only). */
  const exercised = new Map<Fault, number>();
  const reservations = new Map<string, string>(); // reservation id → key id
  const admissionsByKey = new Map<string, number>();
  const settled: Settled[] = [];
  let seenByGateway = 0;

  let a: MockUpstream;
  let b: MockUpstream;
  let pool: UpstreamPool;
  let metrics: LlmuxMetrics;
  let gateway: LlmuxRouter;
  let server: http.Server;
  let agent: http.Agent;
  let port: number;
  let store: MemoryKeyStore;
  let baseline: string[];
  let timers: ReturnType<typeof trackTimers> | undefined;
  let stopping: Promise<ShutdownResult> | undefined;

  /** Scripts one upstream attempt, from the client request it belongs to. */
  const behaviour = (request: { headers: http.IncomingHttpHeaders }): MockBehaviour => {
    const trace = traceById.get(String(request.headers['x-request-id']));
    const first = trace?.attempts[0];
    const fault: Fault =
      trace?.sticky && first !== undefined
        ? first.fault
        : (() => {
            const roll = random();
            if (roll < 0.08) return 'rate_limited';
            if (roll < 0.16) return 'server_error';
            if (roll < 0.22) return 'reset_before_headers';
            if (roll < 0.28) return 'reset_mid_stream';
            // Rarer than the others: each holds its gate slot until the relay gives up.
            if (roll < 0.3) return 'slow_first_byte';
            if (roll < 0.39) return 'truncated_sse';
            return 'ok';
          })();
    let attempt: Attempt;
    switch (fault) {
      case 'rate_limited':
        attempt = { fault, chunks: 3, behaviour: { status: 429, retryAfter: random() < 0.7 ? '0' : '2' } };
        break;
      case 'server_error':
        attempt = { fault, chunks: 3, behaviour: { status: 500 } };
        break;
      case 'reset_before_headers':
        attempt = { fault, chunks: 3, behaviour: { resetBeforeHeaders: true } };
        break;
      case 'reset_mid_stream':
        attempt = { fault, chunks: 6, behaviour: { chunks: 6, resetAfterChunks: 2 } };
        break;
      case 'slow_first_byte':
        attempt = { fault, chunks: 3, behaviour: { delayBeforeHeadersMs: SLOW_FIRST_BYTE_MS } };
        break;
      case 'truncated_sse':
        attempt = { fault, chunks: 4, behaviour: { chunks: 4, omitDone: true } };
        break;
      case 'ok': {
        // Some streams take a while, so clients also leave in the middle of one.
        const chunks = 1 + Math.floor(random() * 6);
        attempt = { fault, chunks, behaviour: { chunks, chunkDelayMs: random() < 0.3 ? 10 : 0 } };
        break;
      }
    }
    if (trace !== undefined) {
      trace.attempts.push(attempt);
      if (fault !== 'ok' && (trace.stream || !SSE_ONLY.has(fault))) {
        exercised.set(fault, (exercised.get(fault) ?? 0) + 1);
      }
    }
    return attempt.behaviour;
  };

  beforeAll(async () => {
    baseline = process.getActiveResourcesInfo();
    timers = trackTimers();
    realProcess.on('uncaughtException', onUncaught);
    realProcess.on('unhandledRejection', onUnhandled);
    [a, b] = await Promise.all([
      createMockUpstream({ maxRecorded: 0 }),
      createMockUpstream({ maxRecorded: 0 }),
    ]);
    a.setBehaviour(behaviour);
    b.setBehaviour(behaviour);

    // One key per client request, so each admission and settlement names its request.
    store = new MemoryKeyStore();
    for (let n = 0; n < REQUESTS; n++) {
      const stream = random() < 0.5;
      const abortRoll = random();
      const abort: AbortPlan =
        abortRoll >= ABORT_RATE
          ? { kind: 'none' }
          : abortRoll < ABORT_RATE / 2
            ? { kind: 'timer', afterMs: Math.floor(random() * 60) }
            : { kind: 'first-byte' };
      const trace: Trace = {
        id: `chaos-${n}`,
        key: `sk-llmux-chaos-${String(n).padStart(6, '0')}`,
        stream,
        abort,
        sticky: random() < 0.2,
        attempts: [],
        seenByGateway: false,
        outcome: undefined,
      };
      traces.push(trace);
      traceById.set(trace.id, trace);
      await store.createKey({
        id: trace.id,
        name: trace.id,
        hash: hashApiKey(trace.key),
        prefix: 'sk-llmux-chao',
      });
    }
    // Count what the middleware asks of the real store: admissions and settlements, per key.
    const admit = store.admit.bind(store);
    store.admit = async (request) => {
      const result = await admit(request);
      if (result.ok) {
        reservations.set(result.reservationId, request.keyId);
        admissionsByKey.set(request.keyId, (admissionsByKey.get(request.keyId) ?? 0) + 1);
      }
      return result;
    };
    const settle = store.settle.bind(store);
    store.settle = async (id, settlement) => {
      settled.push({ keyId: reservations.get(id) ?? `unknown reservation ${id}`, settlement });
      return settle(id, settlement);
    };

    pool = upstreamPool({
      upstreams: [
        { url: `${a.url}/v1`, apiKey: 'sk-a', name: 'a' },
        { url: `${b.url}/v1`, apiKey: 'sk-b', name: 'b' },
      ],
      cooldown: { baseMs: 5, maxMs: 20, rateLimitMs: 5, failureThreshold: 5 },
    });
    metrics = createMetrics({ models: [MODEL] });
    gateway = llmux({
      upstream: pool,
      auth: { store, logger },
      gate: { max: 16, maxQueue: 1_000, queueTimeoutMs: 10_000 },
      relay: {
        firstByteTimeoutMs: FIRST_BYTE_TIMEOUT_MS,
        idleTimeoutMs: FIRST_BYTE_TIMEOUT_MS,
        retry: retry({
          attempts: 2,
          baseDelayMs: 1,
          maxDelayMs: 5,
          maxRetryAfterMs: MAX_RETRY_AFTER_MS,
          budget: { ratio: 0.5, minRetriesPerWindow: 50 },
        }),
      },
      metrics,
      logger,
    });
    const app = express();
    app.use((req, _res, next) => {
      seenByGateway++;
      const trace = traceById.get(String(req.headers['x-request-id']));
      if (trace !== undefined) trace.seenByGateway = true;
      next();
    });
    app.use(gateway);
    server = createServer(app);
    ({ port } = await listen(server));
    agent = new http.Agent({ keepAlive: true });
  });

  afterAll(async () => {
    stopping ??= shutdown(server, [gateway, metrics], { timeoutMs: 2_000 });
    await stopping;
    await Promise.all([a.close(), b.close()]);
    agent?.destroy();
    timers?.restore();
    realProcess.off('uncaughtException', onUncaught);
    realProcess.off('unhandledRejection', onUnhandled);
  });

  function send(trace: Trace): Promise<Outcome> {
    return new Promise((resolve) => {
      const body = JSON.stringify({
        model: MODEL,
        stream: trace.stream,
        max_tokens: 16,
        messages: [{ role: 'user', content: 'chaos' }],
      });
      let timer: NodeJS.Timeout | undefined;
      let leaving = false;
      let headersReceived = false;
      const done = (outcome: Outcome) => {
        clearTimeout(timer);
        resolve(outcome); // the first call wins
      };
      const leave = () => {
        leaving = true;
        req.destroy();
        done({ kind: 'aborted', headersReceived });
      };
      const req = http.request(
        {
          agent,
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/v1/chat/completions',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${trace.key}`,
            'x-request-id': trace.id,
          },
        },
        (res) => {
          headersReceived = true;
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => {
            chunks.push(chunk);
            if (trace.abort.kind === 'first-byte' && !leaving) leave();
          });
          res.on('end', () => {
            done({
              kind: 'response',
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
            });
          });
          res.on('error', (err) => {
            if (!leaving) done({ kind: 'dropped', error: `response: ${String(err)}` });
          });
        },
      );
      req.on('error', (err) => {
        if (!leaving) done({ kind: 'dropped', error: `request: ${String(err)}` });
      });
      req.on('close', () => {
        if (!leaving) done({ kind: 'dropped', error: 'closed before the response ended' });
      });
      if (trace.abort.kind === 'timer') timer = setTimeout(leave, trace.abort.afterMs);
      req.end(body);
    });
  }

  async function metricValues(name: string) {
    const metric = metrics.registry.getSingleMetric(`llmux_${name}`);
    if (metric === undefined) throw new Error(`no metric llmux_${name}`);
    return (await metric.get()).values;
  }

  async function metricSum(name: string, labels: Record<string, string> = {}): Promise<number> {
    let sum = 0;
    for (const value of await metricValues(name)) {
      const matches = Object.entries(labels).every(([label, wanted]) => value.labels[label] === wanted);
      if (matches) sum += value.value;
    }
    return sum;
  }

  it(
    `relays ${REQUESTS} requests without losing a permit, a slot, a handle or a bill`,
    async () => {
      let next = 0;
      const worker = async () => {
        while (next < traces.length) {
          const trace = traces[next++]!;
          trace.outcome = await send(trace);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));

      // Every request the gateway saw is settled and recorded (an event); each settlement was asked
      // of the store when its request settled, so every reservation is billed by then.
      await metrics.whenRecorded();
      await waitFor(() => settled.length === reservations.size, {
        what: 'every reservation to be settled',
        detail: () => ({ settled: settled.length, reservations: reservations.size }),
      });

      // The process never crashed, nothing was logged as recovered or failed.
      expect(crashes).toEqual([]);
      expect(logged).toEqual([]);

      // Every fault was handed out, and clients left both before the headers and mid-body.
      expect(FAULTS.filter((fault) => (exercised.get(fault) ?? 0) === 0)).toEqual([]);
      const outcomes = traces.map((t) => t.outcome!);
      const aborted = outcomes.filter((o) => o.kind === 'aborted');
      if (ABORT_RATE > 0) {
        expect(aborted.filter((o) => !o.headersReceived).length).toBeGreaterThan(0);
        expect(aborted.filter((o) => o.headersReceived).length).toBeGreaterThan(0);
      }
      // A connection the client did not cut never fails.
      expect(outcomes.filter((o) => o.kind === 'dropped')).toEqual([]);

      // Every answer is the one its last attempt calls for (or no upstream was free): a complete
      // success, an OpenAI-shaped error with its README status, or a stream ending in an error frame.
      const unexpected: unknown[] = [];
      const codes = new Map<string, number>();
      let complete200 = 0;
      for (const trace of traces) {
        const outcome = trace.outcome!;
        if (outcome.kind !== 'response') continue;
        const { status, headers, body } = outcome;
        let code: string | undefined;
        let complete = false;
        if (headers['x-request-id'] !== trace.id)
          unexpected.push({ id: trace.id, echoedId: headers['x-request-id'] });
        if (status !== 200) {
          const parsed: unknown = JSON.parse(body);
          if (!isOpenAiError(parsed)) unexpected.push({ id: trace.id, status, body });
          code = (parsed as { error: { code: string } }).error.code;
          if ((status === 429 || status === 503) && !/^[1-9]\d*$/.test(String(headers['retry-after']))) {
            unexpected.push({ id: trace.id, status, retryAfter: headers['retry-after'] });
          }
        } else if (trace.stream) {
          const frames = sseFrames(body);
          const last = frames[frames.length - 1] ?? '';
          if (last === 'data: [DONE]') {
            complete = true;
            // The usage chunk the relay asked for on the client's behalf is not shown.
            if (body.includes('"usage":{')) unexpected.push({ id: trace.id, shownUsage: body });
          } else if (last.startsWith('event: error\ndata: ')) {
            const parsed: unknown = JSON.parse(last.slice('event: error\ndata: '.length));
            if (!isOpenAiError(parsed) || frames.includes('data: [DONE]'))
              unexpected.push({ id: trace.id, body });
            code = (parsed as { error: { code: string } }).error.code;
          } else {
            unexpected.push({ id: trace.id, unterminatedStream: body });
          }
        } else {
          const parsed = JSON.parse(body) as { choices?: unknown[] };
          if (!Array.isArray(parsed.choices)) unexpected.push({ id: trace.id, body });
          complete = true;
        }
        if (complete) complete200++;
        const label = `${status} ${code ?? 'ok'}`;
        codes.set(label, (codes.get(label) ?? 0) + 1);
        if (code === 'no_upstream_available') {
          if (status !== 503) unexpected.push({ id: trace.id, status, code });
          continue;
        }
        const last = trace.attempts[trace.attempts.length - 1];
        const wanted = last === undefined ? undefined : expectedResult(last.fault, trace.stream);
        if (wanted?.status !== status || wanted.code !== code) {
          unexpected.push({ id: trace.id, status, code, attempts: trace.attempts.map((t) => t.fault) });
        }
        // An upstream hint above maxRetryAfterMs is not waited for: it is passed on to the client.
        const hint = last?.behaviour.retryAfter;
        if (code === 'rate_limited' && hint === '2' && headers['retry-after'] !== '2') {
          unexpected.push({ id: trace.id, retryAfter: headers['retry-after'], upstreamHint: hint });
        }
      }
      expect(unexpected).toEqual([]);
      expect(complete200).toBeGreaterThan(REQUESTS / 3);
      // The slow first byte ran into the relay's timeout and reached clients as README's 504.
      expect(codes.get('504 upstream_timeout') ?? 0).toBeGreaterThan(0);

      // Billing: every admission settled exactly once; a complete 200 is billed its real usage,
      // a response that carried no answer is billed nothing, and each key's spend is its bill.
      expect(settled.filter((s) => s.keyId.startsWith('unknown'))).toEqual([]);
      const settlementsByKey = new Map<string, Settlement[]>();
      for (const { keyId, settlement } of settled) {
        settlementsByKey.set(keyId, [...(settlementsByKey.get(keyId) ?? []), settlement]);
      }
      const keys = new Map((await store.listKeys()).map((key) => [key.id, key]));
      const billing: unknown[] = [];
      let settledUsd = 0;
      for (const trace of traces) {
        const outcome = trace.outcome!;
        const admissions = admissionsByKey.get(trace.id) ?? 0;
        const settlements = settlementsByKey.get(trace.id) ?? [];
        const spendUsd = keys.get(trace.id)?.spendUsd;
        const costUsd = settlements.reduce((sum, s) => sum + s.costUsd, 0);
        settledUsd += costUsd;
        if (admissions > 1 || settlements.length !== admissions || spendUsd !== costUsd) {
          billing.push({ id: trace.id, admissions, settlements: settlements.length, spendUsd, costUsd });
          continue;
        }
        if (!trace.seenByGateway && (admissions > 0 || trace.attempts.length > 0)) {
          billing.push({ id: trace.id, unseenButAdmitted: admissions, attempts: trace.attempts.length });
        }
        if (outcome.kind !== 'response') continue;
        if (!trace.seenByGateway || admissions !== 1) {
          billing.push({ id: trace.id, answeredWithout: { seen: trace.seenByGateway, admissions } });
          continue;
        }
        const bill = settlements[0]!;
        const isComplete =
          outcome.status === 200 && (!trace.stream || outcome.body.endsWith('data: [DONE]\n\n'));
        if (isComplete) {
          const chunks = trace.attempts[trace.attempts.length - 1]?.chunks;
          if (!(bill.costUsd > 0 && bill.promptTokens > 0 && bill.completionTokens === chunks)) {
            billing.push({ id: trace.id, complete: bill, chunks });
          }
        } else if (outcome.status === 200) {
          // A stream cut after its first chunks: billed for what was relayed, never nothing.
          if (!(bill.costUsd > 0)) billing.push({ id: trace.id, cutStream: bill });
        } else if (bill.costUsd !== 0 || bill.promptTokens + bill.completionTokens !== 0) {
          billing.push({ id: trace.id, errorBilled: bill, status: outcome.status });
        }
      }
      expect(billing).toEqual([]);
      expect(settled.length).toBe(reservations.size);
      expect(settled.length).toBeGreaterThanOrEqual(complete200);
      const totalSpendUsd = [...keys.values()].reduce((sum, key) => sum + key.spendUsd, 0);
      expect(totalSpendUsd).toBeCloseTo(settledUsd, 12);

      // Metrics: nothing in flight, one observation per request the gateway saw, spend counted once.
      expect(await metricSum('in_flight_requests')).toBe(0);
      expect(seenByGateway).toBe(traces.filter((t) => t.seenByGateway).length);
      expect(seenByGateway).toBeGreaterThanOrEqual(outcomes.filter((o) => o.kind === 'response').length);
      expect(await metricSum('requests_total')).toBe(seenByGateway);
      expect(await metricSum('requests_total', { status_class: '2xx', code: 'none' })).toBeGreaterThanOrEqual(
        complete200,
      );
      const clientClosed = await metricSum('requests_total', { code: 'client_closed' });
      expect(clientClosed).toBeLessThanOrEqual(aborted.length);
      if (ABORT_RATE > 0) {
        // The relay saw clients leave before it answered and in the middle of a stream.
        expect(
          await metricSum('requests_total', { status_class: 'none', code: 'client_closed' }),
        ).toBeGreaterThan(0);
        expect(
          await metricSum('requests_total', { status_class: '2xx', code: 'client_closed' }),
        ).toBeGreaterThan(0);
      }
      expect(await metricSum('spend_usd_total')).toBeCloseTo(settledUsd, 12);

      // The gate holds all its permits; no upstream attempt is left in flight.
      expect(gateway.pieces.gate!.stats()).toEqual({ inFlight: 0, queued: 0, keys: 0 });
      expect(await metricSum('gate_in_flight')).toBe(0);
      expect(await metricSum('gate_queue_depth')).toBe(0);
      expect(pool.inFlightTotal()).toBe(0);
      expect(pool.status().map((s) => [s.name, s.inFlight])).toEqual([
        ['a', 0],
        ['b', 0],
      ]);

      // Shutdown drains without force; closing the gateway closes its upstream connections.
      stopping = shutdown(server, [gateway, metrics], { timeoutMs: 2_000 });
      expect(await stopping).toEqual({ drained: true, forcedConnections: 0, errors: [] });
      await waitFor(() => a.openConnections() + b.openConnections() === 0, {
        what: 'the upstream connections to close',
        detail: () => [a.openConnections(), b.openConnections()],
      });
      await Promise.all([a.close(), b.close()]);
      agent.destroy();
      // No socket, server, timer or other resource is left beyond what the process had before
      // (jest's own aside), and no timer made during the run is pending, ref'd or not.
      // (A before/after diff, not an async_hooks watch: hooks would slow a run of this size.)
      await waitFor(() => Object.keys(resourcesAbove(baseline)).length === 0, {
        what: 'no resource left beyond the baseline',
        timeoutMs: 3_000,
        detail: () => resourcesAbove(baseline),
      });
      await waitFor(() => timers!.pending().length === 0, {
        what: 'no timer made during the run to be pending',
        timeoutMs: 3_000,
        detail: () => timers!.pending(),
      });
      expect(crashes).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );
});
