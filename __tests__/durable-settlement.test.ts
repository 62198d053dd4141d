// Durable settlement against a real Redis this file starts (so it can pause and kill it): under
// load, with Redis paused (SIGSTOP) or killed (SIGKILL) and restarted, every request answered 200
// is billed exactly once — the key's spend is the sum of the costs the client was shown — no hold
// is left, nothing crashes, and the settlement queue drains. Every wait here is bounded.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  bodyLimit,
  ensureContext,
  hashApiKey,
  keyAuth,
  Pricing,
  streamRelay,
  type KeyAuth,
  type Settlement,
} from '../lib/index.js';
import { RedisKeyStore } from '../lib/redis.js';
import { createMockUpstream, type MockUpstream } from '../lib/testing/index.js';
import { realProcess } from './support/real-process.js';

/** $1 per million prompt tokens, $2 per million output tokens: every cost is exact in the header's 10 decimals. */
const PRICES = { priced: { inputPerMTokUsd: 1, outputPerMTokUsd: 2 } };

/**
 * The prices, and a hook into the one step keyAuth takes between the key's lookup and its
 * admission: the `at`-th request pauses Redis there, so its admission is sent to a Redis that
 * cannot answer, times out, and lands when Redis resumes.
 */
class PausingPricing extends Pricing {
  private priced = 0;
  readonly paused: Promise<void>;
  private markPaused!: () => void;

  constructor(
    private readonly at: number,
    private readonly pause: () => void,
  ) {
    super(PRICES, { catalog: false });
    this.paused = new Promise((resolve) => (this.markPaused = resolve));
  }

  override priceOf(model: string | undefined) {
    if (++this.priced === this.at) {
      this.pause();
      this.markPaused();
    }
    return super.priceOf(model);
  }
}
const SECRET = 'sk-llmux-durable-settlement-0001';
const MAX_PARALLEL = 64;
const COMMAND_TIMEOUT_MS = 200;
/** How long Redis stays paused. */
const PAUSE_MS = 1_500;
/** Bounds of every wait of the file. */
const SETTLE_BOUND_MS = 20_000;
const REQUEST_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 90_000;

// --- A Redis of our own ---------------------------------------------------------------------

interface OwnRedis {
  port: number;
  url: string;
  dir: string;
  child: ChildProcess;
}

async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Starts redis-server on `port` in `dir`; with `persist`, every write is fsynced to an AOF first. */
async function startRedis(port: number, dir: string, persist: boolean): Promise<ChildProcess> {
  const persistence = persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await answersPing(port)) return child;
    await delay(50);
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not start on port ${port}`);
}

/** True when a Redis on `port` answers PING (not LOADING), within a second. */
async function answersPing(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString('latin1').startsWith('+PONG')));
  });
}

async function ownRedis(persist: boolean): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'llmux-durable-'));
  const child = await startRedis(port, dir, persist);
  return { port, url: `redis://127.0.0.1:${port}`, dir, child };
}

/** Kills (SIGKILL, which also ends a stopped process) and waits for the exit, bounded. */
async function killRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await within(exited, 5_000, 'redis-server exiting');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every 20 ms until it holds, failing after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await delay(20);
  }
}

// --- The gateway under test -----------------------------------------------------------------

interface Gateway {
  store: RedisKeyStore;
  auth: KeyAuth;
  keyId: string;
  /** The store's full key prefix, for reading its hashes directly. */
  prefix: string;
  base: string;
  /** Requests whose context is settled (response closed, cost priced). */
  settled(): number;
  close(): Promise<void>;
}

async function gateway(
  mock: MockUpstream,
  url: string,
  onStoreError: 'fail-closed' | 'fail-open',
  pricing: Pricing = new Pricing(PRICES, { catalog: false }),
): Promise<Gateway> {
  const prefix = `llmux-durable:${randomBytes(4).toString('hex')}:`;
  const store = new RedisKeyStore({ url, prefix, commandTimeoutMs: COMMAND_TIMEOUT_MS, onStoreError });
  const key = await store.createKey({
    name: 'load',
    hash: hashApiKey(SECRET),
    prefix: 'sk-llmux-dur',
    budgetUsd: 1_000,
    maxParallel: MAX_PARALLEL,
  });
  const auth = keyAuth({
    store,
    pricing,
    exposeCost: true,
    settlement: { retryBaseMs: 50, retryMaxMs: 400 },
    logger: { error: () => {} },
  });
  const relay = streamRelay({ upstream: { url: `${mock.url}/v1`, apiKeys: ['sk-up'] } });
  let settledCount = 0;
  const app = express();
  app.post(
    '/v1/chat/completions',
    (req, res, next) => {
      ensureContext(req, res).onSettled(() => settledCount++);
      next();
    },
    bodyLimit(),
    auth,
    relay,
  );
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    store,
    auth,
    keyId: key.id,
    prefix,
    base: `http://127.0.0.1:${port}`,
    settled: () => settledCount,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await relay.close();
      await auth.close();
      await store.close();
    },
  };
}

interface Outcome {
  status: number;
  stream: boolean;
  /** The cost the client was shown (header, or the stream's last comment), when it was. */
  costUsd: number | undefined;
  code: string | undefined;
}

const COST_COMMENT = /^: x-llmux-cost-usd (\S+)$/m;

async function send(base: string, stream: boolean, words: number): Promise<Outcome> {
  const content = Array.from({ length: words }, (_, i) => `word${i}`).join(' ');
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'priced', max_tokens: 8, stream, messages: [{ role: 'user', content }] }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let costUsd: number | undefined;
  let code: string | undefined;
  if (res.status === 200) {
    const shown = stream ? COST_COMMENT.exec(text)?.[1] : (res.headers.get('x-llmux-cost-usd') ?? undefined);
    costUsd = shown === undefined ? undefined : Number(shown);
  } else {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  }
  return { status: res.status, stream, costUsd, code };
}

/**
 * `total` requests, `concurrency` at a time, JSON and streams alternating, prompts of 1 to 7 words;
 * `onDone` hears the count of finished requests after each one; each client waits `thinkMs` between two.
 */
async function load(
  base: string,
  total: number,
  concurrency: number,
  onDone: (finished: number) => void = () => {},
  thinkMs = 0,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  async function client(): Promise<void> {
    while (next < total) {
      const i = next++;
      outcomes.push(await send(base, i % 2 === 0, 1 + (i % 7)));
      onDone(outcomes.length);
      if (thinkMs > 0) await delay(thinkMs);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, client));
  return outcomes;
}

/** Resolves once `load` reported `count` finished requests. */
function afterRequests(count: number): { onDone: (finished: number) => void; reached: Promise<void> } {
  let reach!: () => void;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  return { onDone: (finished) => finished >= count && reach(), reached };
}

/** The key's accounting hash and open holds, read directly from Redis. */
async function accountOf(redis: Redis, gw: Gateway) {
  const acct = await redis.hgetall(`${gw.prefix}key.acct:${gw.keyId}`);
  const holds = await redis.zcard(`${gw.prefix}key.holds:${gw.keyId}`);
  return {
    spendUsd: Number(acct.spend ?? 0),
    reservedUsd: Number(acct.reserved ?? 0),
    admissionsLanded: Number(acct.reqToday ?? 0),
    holds,
  };
}

/** Waits for every request's context to settle, then for every settlement to land, bounded. */
async function drained(gw: Gateway, requests: number): Promise<number> {
  const started = Date.now();
  await until(() => gw.settled() >= requests, SETTLE_BOUND_MS, `${requests} requests settling`);
  await within(gw.auth.whenSettled(), SETTLE_BOUND_MS, 'auth.whenSettled()');
  return Date.now() - started;
}

/** Admits `MAX_PARALLEL` requests at once through the store: all pass when no hold is left. */
async function freeSlots(gw: Gateway): Promise<number> {
  const nowMs = Date.now();
  const admissions = await Promise.all(
    Array.from({ length: MAX_PARALLEL }, () =>
      gw.store.admit({ keyId: gw.keyId, model: 'priced', estimatedCostUsd: 0, estimatedTokens: 0, nowMs }),
    ),
  );
  const open = admissions.flatMap((admission) => (admission.ok ? [admission.reservationId] : []));
  const none: Settlement = { model: 'priced', costUsd: 0, promptTokens: 0, completionTokens: 0, nowMs };
  await Promise.all(open.map((id) => gw.store.settle(id, none)));
  return open.length;
}

const sum = (values: number[]): number => values.reduce((total, value) => total + value, 0);

/** Crash events the real process emitted while `work` ran. */
async function crashesDuring(work: () => Promise<void>): Promise<unknown[]> {
  const crashes: unknown[] = [];
  const onCrash = (reason: unknown) => crashes.push(reason);
  realProcess.on('unhandledRejection', onCrash);
  realProcess.on('uncaughtException', onCrash);
  try {
    await work();
  } finally {
    realProcess.off('unhandledRejection', onCrash);
    realProcess.off('uncaughtException', onCrash);
  }
  return crashes;
}

/** What the scenarios saw, printed at the end with DURABLE_FIGURES=1. */
const figures: Record<string, unknown> = {};

describe('durable settlement on a real Redis', () => {
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await createMockUpstream();
    // Answers that take a while (so Redis stops while requests are in flight), of varying size.
    mock.setBehaviour((request) => ({
      chunks: 1 + (request.seq % 5),
      chunkDelayMs: 15,
      delayBeforeHeadersMs: 30,
    }));
  });
  afterAll(async () => {
    await mock.close();
    if (process.env.DURABLE_FIGURES === '1') {
      process.stderr.write(`durable-settlement figures: ${JSON.stringify(figures, null, 2)}\n`);
    }
  });

  describe.each(['fail-closed', 'fail-open'] as const)('with Redis paused (onStoreError: %s)', (mode) => {
    let redis: OwnRedis;
    let direct: Redis;
    beforeAll(async () => {
      redis = await ownRedis(false);
      direct = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    });
    afterAll(async () => {
      direct.disconnect();
      await killRedis(redis.child);
      rmSync(redis.dir, { recursive: true, force: true });
    });

    it(
      'bills every request served 200 exactly once and leaves no hold',
      async () => {
        // The 20th request stops Redis after its key was found, before its admission is sent.
        const pricing = new PausingPricing(20, () => redis.child.kill('SIGSTOP'));
        const gw = await gateway(mock, redis.url, mode, pricing);
        try {
          const total = 100;
          let outcomes: Outcome[] = [];
          const crashes = await crashesDuring(async () => {
            const running = load(gw.base, total, 6);
            await within(pricing.paused, SETTLE_BOUND_MS, 'the pause');
            await delay(PAUSE_MS);
            redis.child.kill('SIGCONT');
            outcomes = await within(running, 60_000, 'the load');
          });
          const drainMs = await drained(gw, total);

          const served = outcomes.filter((o) => o.status === 200);
          const refused = outcomes.filter((o) => o.status !== 200);
          const account = await accountOf(direct, gw);
          const shownUsd = sum(served.map((o) => o.costUsd!));
          figures[mode] = {
            requests: total,
            served: served.length,
            servedStreams: served.filter((o) => o.stream).length,
            refused: refused.length,
            refusedCodes: [...new Set(refused.map((o) => o.code))],
            shownUsd,
            spendUsd: account.spendUsd,
            difference: account.spendUsd - shownUsd,
            admissionsLanded: account.admissionsLanded,
            lateAdmissionsSettledAtZero: account.admissionsLanded - served.length,
            reservedUsd: account.reservedUsd,
            holds: account.holds,
            settlement: gw.auth.settlementStats(),
            drainMs,
          };

          expect(crashes).toEqual([]);
          expect(served.every((o) => o.costUsd !== undefined && o.costUsd > 0)).toBe(true);
          expect(Math.abs(account.spendUsd - shownUsd)).toBeLessThan(1e-9);
          expect(account.reservedUsd).toBe(0);
          expect(account.holds).toBe(0);
          expect(await freeSlots(gw)).toBe(MAX_PARALLEL);
          expect(gw.auth.settlementStats()).toMatchObject({ pending: 0, dropped: 0, refused: 0 });
          // The pause was felt: settlements had to wait for Redis.
          expect(gw.auth.settlementStats().recovered).toBeGreaterThan(0);
          if (mode === 'fail-closed') {
            // Requests during the pause were refused, and no refused request was billed, not even
            // those whose admission timed out and landed when Redis resumed (the 20th at least).
            expect(refused.length).toBeGreaterThan(0);
            expect(account.admissionsLanded - served.length).toBeGreaterThanOrEqual(1);
            expect(refused.every((o) => o.status === 503 && o.code === 'store_unavailable')).toBe(true);
            expect(served.length).toBeGreaterThan(0);
          } else {
            // Failing open, every request was served, and every one billed once its admission landed.
            expect(refused).toEqual([]);
            expect(account.admissionsLanded).toBe(total);
          }
        } finally {
          await gw.close();
        }
      },
      TEST_TIMEOUT_MS,
    );
  });

  describe('with Redis killed under load and restarted on its port', () => {
    let redis: OwnRedis;
    let direct: Redis;
    beforeAll(async () => {
      // Its writes fsynced to an append-only file: the restarted Redis has the key and its holds.
      redis = await ownRedis(true);
      direct = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      direct.on('error', () => {});
    });
    afterAll(async () => {
      direct.disconnect();
      await killRedis(redis.child);
      rmSync(redis.dir, { recursive: true, force: true });
    });

    it(
      'does not crash, drains the settlement queue, and bills requests after the restart exactly',
      async () => {
        const gw = await gateway(mock, redis.url, 'fail-closed');
        try {
          const total = 80;
          const trigger = afterRequests(20);
          let outcomes: Outcome[] = [];
          let downMs = 0;
          const crashes = await crashesDuring(async () => {
            const running = load(gw.base, total, 6, trigger.onDone, 40);
            await within(trigger.reached, SETTLE_BOUND_MS, 'the first 20 requests');
            const killedAt = Date.now();
            await killRedis(redis.child);
            await delay(500);
            redis.child = await startRedis(redis.port, redis.dir, true);
            downMs = Date.now() - killedAt;
            outcomes = await within(running, 60_000, 'the load');
          });
          const drainMs = await drained(gw, total);
          expect(crashes).toEqual([]);

          const served = outcomes.filter((o) => o.status === 200);
          const refused = outcomes.filter((o) => o.status !== 200);
          const before = await accountOf(direct, gw);
          expect(refused.every((o) => o.status === 503 && o.code === 'store_unavailable')).toBe(true);
          expect(before.holds).toBe(0);
          expect(before.reservedUsd).toBe(0);

          // After the restart: admitted, and billed exactly what the client was shown.
          const after = await crashesDuring(async () => {
            const later = await load(gw.base, 20, 4);
            expect(later.map((o) => o.status)).toEqual(Array(20).fill(200));
            await drained(gw, total + 20);
            const account = await accountOf(direct, gw);
            const shownUsd = sum(later.map((o) => o.costUsd!));
            expect(Math.abs(account.spendUsd - before.spendUsd - shownUsd)).toBeLessThan(1e-9);
            expect(account.holds).toBe(0);
            figures.kill = {
              requests: total,
              downMs,
              served: served.length,
              refused: refused.length,
              shownUsdBeforeRestartLoad: sum(served.map((o) => o.costUsd!)),
              spendUsdBeforeRestartLoad: before.spendUsd,
              afterRestart: { requests: 20, shownUsd, billedUsd: account.spendUsd - before.spendUsd },
              settlement: gw.auth.settlementStats(),
              drainMs,
            };
          });
          expect(after).toEqual([]);
          // The whole run too: the append-only file kept every hold, and every queued settlement landed.
          expect(Math.abs(before.spendUsd - sum(served.map((o) => o.costUsd!)))).toBeLessThan(1e-9);
          expect(await freeSlots(gw)).toBe(MAX_PARALLEL);
          expect(gw.auth.settlementStats()).toMatchObject({ pending: 0, dropped: 0, refused: 0 });
        } finally {
          await gw.close();
        }
      },
      TEST_TIMEOUT_MS,
    );
  });

  describe('the tombstone of a settlement that came first', () => {
    let redis: OwnRedis;
    let direct: Redis;
    beforeAll(async () => {
      redis = await ownRedis(false);
      direct = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    });
    afterAll(async () => {
      direct.disconnect();
      await killRedis(redis.child);
      rmSync(redis.dir, { recursive: true, force: true });
    });

    it('lets an admission that lands after its settlement succeed while reserving nothing', async () => {
      const prefix = `llmux-durable:${randomBytes(4).toString('hex')}:`;
      const store = new RedisKeyStore({ url: redis.url, prefix, commandTimeoutMs: 1_000 });
      try {
        const key = await store.createKey({
          name: 'tomb',
          hash: hashApiKey('sk-llmux-tombstone-0001'),
          prefix: 'sk-llmux-tomb',
          budgetUsd: 1,
          maxParallel: 1,
        });
        const nowMs = Date.now();
        const reservationId = `r_tombstone_${randomBytes(4).toString('hex')}`;
        // The settlement of a fail-open request lands first (its admission is still on its way).
        await store.settle(reservationId, {
          model: 'priced',
          costUsd: 0.25,
          promptTokens: 10,
          completionTokens: 10,
          nowMs,
        });
        expect(await direct.exists(`${prefix}settled:${reservationId}`)).toBe(1);
        const late = await store.admit({
          keyId: key.id,
          model: 'priced',
          estimatedCostUsd: 0.9,
          estimatedTokens: 100,
          nowMs,
          reservationId,
        });
        expect(late).toMatchObject({ ok: true, reservationId });
        const acct = await direct.hgetall(`${prefix}key.acct:${key.id}`);
        expect(Number(acct.reserved ?? 0)).toBe(0);
        expect(await direct.zcard(`${prefix}key.holds:${key.id}`)).toBe(0);
        expect(await direct.exists(`${prefix}res:${reservationId}`)).toBe(0);
        // Its slot and budget are free: the one parallel slot admits another request of 0.9.
        const next = await store.admit({
          keyId: key.id,
          model: 'priced',
          estimatedCostUsd: 0.9,
          estimatedTokens: 100,
          nowMs,
        });
        expect(next.ok).toBe(true);
        expect((await store.getKey(key.id))!.spendUsd).toBe(0);
      } finally {
        await store.close();
      }
    });
  });
});
