// UsageSink through CallbackSink and JsonlFileSink: batches on size and on the timer, one worker,
// retries that lose nothing, a bounded buffer that drops the oldest, and a close() that flushes,
// is idempotent and leaves no timer behind (fake timers throughout, a real temp dir for JSONL).
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../lib/log.js';
import { CallbackSink, type UsageBatchWriter } from '../lib/tracking/callback-sink.js';
import { JsonlFileSink } from '../lib/tracking/jsonl-file-sink.js';
import type { RequestRecord } from '../lib/tracking/record.js';
import type { UsageSinkOptions } from '../lib/tracking/sink.js';

/** A record whose id is `r<n>`. */
function record(n: number): RequestRecord {
  return {
    id: `r${n}`,
    timeMs: Date.parse('2026-03-28T12:00:00.000Z') + n,
    route: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    keyId: 'key_1',
    teamId: undefined,
    userId: undefined,
    status: 200,
    errorCode: undefined,
    stream: false,
    latencyMs: 120,
    ttfbMs: 40,
    promptTokens: 10,
    completionTokens: 20,
    costUsd: 0.0001,
    upstream: 'api.openai.com#0',
    attempts: 1,
  };
}

const ids = (records: readonly RequestRecord[]) => records.map((r) => r.id);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `r${from + i}`);

/** A logger that keeps its events. */
function recordingLogger() {
  const events: Record<string, unknown>[] = [];
  const logger: Logger = { error: (_message, fields) => events.push(fields) };
  return { logger, events };
}

/**
 * A target that keeps every batch it stored, fails while `failuresLeft` > 0, counts how many
 * writes overlap, and, when `hold` is set, waits for `release()` before answering.
 */
function target() {
  const state = {
    batches: [] as string[][],
    calls: 0,
    active: 0,
    maxActive: 0,
    failuresLeft: 0,
    hold: false,
    releases: [] as (() => void)[],
    signals: [] as AbortSignal[],
  };
  const write: UsageBatchWriter = async (batch, signal) => {
    state.calls++;
    state.active++;
    state.maxActive = Math.max(state.maxActive, state.active);
    state.signals.push(signal);
    try {
      if (state.hold) await new Promise<void>((resolve) => state.releases.push(resolve));
      if (state.failuresLeft > 0) {
        state.failuresLeft--;
        throw Object.assign(new Error('connect ECONNREFUSED postgres://app:hunter2@db:5432'), {
          code: 'ECONNREFUSED',
        });
      }
      state.batches.push(ids(batch));
    } finally {
      state.active--;
    }
  };
  const release = () => state.releases.splice(0).forEach((resolve) => resolve());
  return { state, write, release, written: () => state.batches.flat() };
}

function makeSink(options: UsageSinkOptions = {}) {
  const t = target();
  const { logger, events } = recordingLogger();
  const sink = new CallbackSink(t.write, { logger, ...options });
  return { sink, ...t, events };
}

/** Lets promise callbacks run without moving the clock. */
const settle = () => jest.advanceTimersByTimeAsync(0);

describe('UsageSink', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('writes a batch as soon as batchSize records are buffered', async () => {
    const { sink, state } = makeSink({ batchSize: 3, flushIntervalMs: 60_000 });
    sink.write(record(0));
    sink.write(record(1));
    await settle();
    expect(state.calls).toBe(0);
    sink.write(record(2));
    expect(state.calls).toBe(0); // write() itself never writes
    await settle();
    expect(state.batches).toEqual([['r0', 'r1', 'r2']]);
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, flushed: 3, failures: 0 });
    await sink.close();
  });

  it('writes a partial batch when flushIntervalMs passes', async () => {
    const { sink, state } = makeSink({ batchSize: 100, flushIntervalMs: 1_000 });
    sink.write(record(0));
    sink.write(record(1));
    await jest.advanceTimersByTimeAsync(999);
    expect(state.calls).toBe(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(state.batches).toEqual([['r0', 'r1']]);
    sink.write(record(2));
    await jest.advanceTimersByTimeAsync(1_000);
    expect(state.batches).toEqual([['r0', 'r1'], ['r2']]);
    await sink.close();
  });

  it('holds no timer while idle', async () => {
    const { sink } = makeSink({ batchSize: 2 });
    sink.write(record(0));
    sink.write(record(1));
    await settle();
    expect(sink.stats().flushed).toBe(2);
    expect(jest.getTimerCount()).toBe(0);
    await sink.close();
  });

  it('retries a failing target with exponential backoff and loses nothing, in order', async () => {
    const { sink, state, written, events } = makeSink({
      batchSize: 100,
      retryBaseMs: 100,
      retryMaxMs: 30_000,
      maxBuffered: 1_000,
    });
    state.failuresLeft = 4;
    for (let i = 0; i < 250; i++) sink.write(record(i));
    await settle();
    expect(state.calls).toBe(1);
    // Backoff 100, 200, 400, 800 ms; records keep arriving meanwhile.
    await jest.advanceTimersByTimeAsync(99);
    expect(state.calls).toBe(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(state.calls).toBe(2);
    for (let i = 250; i < 300; i++) sink.write(record(i));
    await jest.advanceTimersByTimeAsync(200);
    expect(state.calls).toBe(3);
    await jest.advanceTimersByTimeAsync(400);
    expect(state.calls).toBe(4);
    await jest.advanceTimersByTimeAsync(800);
    expect(state.batches.length).toBeGreaterThanOrEqual(3);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(written()).toEqual(range(0, 300));
    expect(state.batches.every((batch) => batch.length <= 100)).toBe(true);
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, flushed: 300, failures: 4 });
    expect(events.map((e) => e.retryInMs)).toEqual([100, 200, 400, 800]);
    await sink.close();
  });

  it('caps the backoff at retryMaxMs', async () => {
    const { sink, state } = makeSink({ batchSize: 1, retryBaseMs: 100, retryMaxMs: 300 });
    state.failuresLeft = 5;
    sink.write(record(0));
    await settle();
    const callTimes: number[] = [];
    for (let ms = 0; ms < 1_500; ms += 50) {
      const before = state.calls;
      await jest.advanceTimersByTimeAsync(50);
      if (state.calls > before) callTimes.push(ms + 50);
    }
    // Attempts at 0, then +100, +200, +300, +300, +300.
    expect(callTimes).toEqual([100, 300, 600, 900, 1_200]);
    expect(state.batches).toEqual([['r0']]);
    await sink.close();
  });

  it('drops the oldest records, counted, when the buffer overflows during a retry wait', async () => {
    const { sink, state, written } = makeSink({ batchSize: 3, maxBuffered: 5, retryBaseMs: 100 });
    state.failuresLeft = 1;
    for (let i = 0; i < 3; i++) sink.write(record(i));
    await settle(); // [r0 r1 r2] failed and waits for its retry at the head of the buffer
    for (let i = 3; i < 8; i++) sink.write(record(i));
    expect(sink.stats()).toMatchObject({ buffered: 5, dropped: 3 });
    await jest.advanceTimersByTimeAsync(100);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(written()).toEqual(range(3, 8));
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 3, flushed: 5, failures: 1 });
    await sink.close();
  });

  it('never drops a batch the target is writing; the oldest waiting records go instead', async () => {
    const { sink, state, release, written } = makeSink({ batchSize: 2, maxBuffered: 4 });
    state.hold = true;
    sink.write(record(0));
    sink.write(record(1));
    await settle(); // [r0 r1] is in the target's hands
    for (let i = 2; i < 7; i++) sink.write(record(i));
    expect(sink.stats()).toMatchObject({ buffered: 4, dropped: 3 });
    state.hold = false;
    release();
    await jest.advanceTimersByTimeAsync(2_000);
    expect(written()).toEqual(['r0', 'r1', 'r5', 'r6']);
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 3, flushed: 4, failures: 0 });
    await sink.close();
  });

  it('drops the newest record when every buffered one is being written', async () => {
    const { sink, state, release, written } = makeSink({ batchSize: 2, maxBuffered: 2 });
    state.hold = true;
    sink.write(record(0));
    sink.write(record(1));
    await settle();
    sink.write(record(2));
    expect(sink.stats()).toMatchObject({ buffered: 2, dropped: 1 });
    state.hold = false;
    release();
    await sink.close();
    expect(written()).toEqual(['r0', 'r1']);
  });

  it('runs exactly one worker under a burst of 10_000 writes', async () => {
    const t = target();
    let active = 0;
    let maxActive = 0;
    const slowWrite: UsageBatchWriter = async (batch, signal) => {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((resolve) => setTimeout(resolve, 5));
      active--;
      await t.write(batch, signal);
    };
    const sink = new CallbackSink(slowWrite, { batchSize: 100, maxBuffered: 10_000 });
    for (let i = 0; i < 10_000; i++) sink.write(record(i));
    expect(jest.getTimerCount()).toBe(0); // no timer, no task per record
    await jest.advanceTimersByTimeAsync(1_000);
    expect(maxActive).toBe(1);
    expect(t.state.calls).toBe(100);
    expect(t.written()).toEqual(range(0, 10_000));
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, flushed: 10_000, failures: 0 });
    await sink.close();
  });

  it('gives the target a fresh array on each attempt, so changing it changes nothing', async () => {
    const seen: string[][] = [];
    let fail = true;
    const sink = new CallbackSink(
      (batch) => {
        seen.push(ids(batch));
        batch.length = 0;
        if (fail) {
          fail = false;
          throw new Error('down');
        }
      },
      { batchSize: 2, logger: recordingLogger().logger },
    );
    sink.write(record(0));
    sink.write(record(1));
    await jest.advanceTimersByTimeAsync(100);
    expect(seen).toEqual([
      ['r0', 'r1'],
      ['r0', 'r1'],
    ]);
    expect(sink.stats().flushed).toBe(2);
    await sink.close();
  });

  it('never throws from write(), even when the target throws synchronously', async () => {
    const { logger, events } = recordingLogger();
    const sink = new CallbackSink(
      () => {
        throw new Error('sync failure');
      },
      { batchSize: 1, logger },
    );
    expect(() => sink.write(record(0))).not.toThrow();
    await settle();
    expect(sink.stats().failures).toBe(1);
    expect(events).toHaveLength(1);
    await sink.close();
  });

  it('logs failures with counts and a redacted message, never the records', async () => {
    const { sink, state, events } = makeSink({ batchSize: 1 });
    state.failuresLeft = 1;
    sink.write(record(0));
    await settle();
    expect(events).toEqual([
      {
        records: 1,
        attempt: 1,
        retryInMs: 100,
        error: 'connect ECONNREFUSED postgres://[redacted]@db:5432',
        code: 'ECONNREFUSED',
      },
    ]);
    expect(JSON.stringify(events)).not.toContain('hunter2');
    await sink.close();
  });

  describe('close()', () => {
    it('returns the same promise when called twice or concurrently', async () => {
      const { sink, written } = makeSink();
      sink.write(record(0));
      const first = sink.close();
      const second = sink.close();
      expect(second).toBe(first);
      await Promise.all([first, second]);
      expect(sink.close()).toBe(first);
      await sink.close();
      expect(written()).toEqual(['r0']);
    });

    it('is safe before any write and leaves no timer', async () => {
      const { sink, state } = makeSink();
      await expect(sink.close()).resolves.toBeUndefined();
      expect(state.calls).toBe(0);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('writes what is buffered without waiting for the timer', async () => {
      const { sink, state, written } = makeSink({ batchSize: 2, flushIntervalMs: 60_000 });
      for (let i = 0; i < 5; i++) sink.write(record(i));
      await sink.close();
      expect(written()).toEqual(range(0, 5));
      expect(state.batches.every((batch) => batch.length <= 2)).toBe(true);
      expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, flushed: 5, failures: 0 });
    });

    it('cuts a retry wait short and makes one last attempt', async () => {
      const { sink, state, written } = makeSink({ batchSize: 1, retryBaseMs: 10_000 });
      state.failuresLeft = 1;
      sink.write(record(0));
      await settle();
      expect(state.calls).toBe(1);
      await sink.close();
      expect(written()).toEqual(['r0']);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('counts what the last attempt could not write as dropped', async () => {
      const { sink, state } = makeSink({ batchSize: 2 });
      state.failuresLeft = 100;
      for (let i = 0; i < 5; i++) sink.write(record(i));
      await sink.close();
      expect(sink.stats()).toEqual({ buffered: 0, dropped: 5, flushed: 0, failures: 1 });
    });

    it('waits for a write in progress, then writes the rest', async () => {
      const { sink, state, release, written } = makeSink({ batchSize: 2 });
      state.hold = true;
      for (let i = 0; i < 3; i++) sink.write(record(i));
      await settle();
      const closed = sink.close();
      state.hold = false;
      release();
      await closed;
      expect(written()).toEqual(['r0', 'r1', 'r2']);
      expect(state.maxActive).toBe(1);
    });

    it('gives up after closeTimeoutMs, aborts the signal and counts the records as dropped', async () => {
      const { sink, state } = makeSink({ batchSize: 2, closeTimeoutMs: 5_000 });
      state.hold = true;
      for (let i = 0; i < 3; i++) sink.write(record(i));
      await settle();
      let done = false;
      const closed = sink.close().then(() => {
        done = true;
      });
      await jest.advanceTimersByTimeAsync(4_999);
      expect(done).toBe(false);
      await jest.advanceTimersByTimeAsync(1);
      await closed;
      expect(state.signals[0]!.aborted).toBe(true);
      expect(sink.stats()).toEqual({ buffered: 0, dropped: 3, flushed: 0, failures: 0 });
      expect(jest.getTimerCount()).toBe(0);
      // A target that answers late changes nothing any more.
      state.hold = false;
      state.releases.splice(0).forEach((resolve) => resolve());
      await settle();
      expect(sink.stats()).toEqual({ buffered: 0, dropped: 3, flushed: 0, failures: 0 });
      expect(state.calls).toBe(1);
    });

    it('counts writes after close as dropped', async () => {
      const { sink, state } = makeSink();
      sink.write(record(0));
      await sink.close();
      sink.write(record(1));
      sink.write(record(2));
      await settle();
      expect(sink.stats()).toEqual({ buffered: 0, dropped: 2, flushed: 1, failures: 0 });
      expect(state.calls).toBe(1);
    });

    it.each([
      ['idle', () => {}],
      ['waiting for a batch to fill', (sink: CallbackSink) => sink.write(record(0))],
    ])('leaves no timer behind when closed %s', async (_state, prepare) => {
      const { sink } = makeSink({ batchSize: 10 });
      sink.write(record(100));
      await settle();
      await jest.advanceTimersByTimeAsync(1_000);
      prepare(sink);
      await settle();
      await sink.close();
      expect(jest.getTimerCount()).toBe(0);
    });

    it('leaves no timer behind when closed during a retry wait', async () => {
      const { sink, state } = makeSink({ batchSize: 1 });
      state.failuresLeft = 10;
      sink.write(record(0));
      await settle();
      expect(jest.getTimerCount()).toBe(1); // the one backoff timer
      await sink.close();
      expect(jest.getTimerCount()).toBe(0);
    });
  });

  it.each<[string, () => unknown]>([
    ['batchSize', () => new CallbackSink(async () => {}, { batchSize: 0 })],
    ['maxBuffered', () => new CallbackSink(async () => {}, { maxBuffered: 1.5 })],
    ['flushIntervalMs', () => new CallbackSink(async () => {}, { flushIntervalMs: -1 })],
    ['retryBaseMs', () => new CallbackSink(async () => {}, { retryBaseMs: Number.NaN })],
    ['closeTimeoutMs', () => new CallbackSink(async () => {}, { closeTimeoutMs: 2 ** 32 })],
    [
      'batchSize must be at most maxBuffered',
      () => new CallbackSink(async () => {}, { batchSize: 20, maxBuffered: 10 }),
    ],
    [
      'retryMaxMs must be at least retryBaseMs',
      () => new CallbackSink(async () => {}, { retryBaseMs: 500, retryMaxMs: 100 }),
    ],
    ['CallbackSink: writeBatch', () => new CallbackSink('nope' as unknown as UsageBatchWriter)],
    ['JsonlFileSink: path', () => new JsonlFileSink({ path: '' })],
    ['JsonlFileSink: batchSize', () => new JsonlFileSink({ path: 'x.jsonl', batchSize: 0 })],
  ])('throws a TypeError naming %s', (name, make) => {
    expect(make).toThrow(TypeError);
    expect(make).toThrow(name);
  });
});

describe('JsonlFileSink', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llmux-sink-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('appends one JSON object per line, creating the directory', async () => {
    const path = join(dir, 'nested', 'deeper', 'usage.jsonl');
    const sink = new JsonlFileSink({ path, batchSize: 2 });
    const records = Array.from({ length: 5 }, (_, i) => record(i));
    for (const r of records) sink.write(r);
    await sink.close();
    const text = await readFile(path, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.slice(0, -1).split('\n');
    expect(lines.map((line) => JSON.parse(line))).toEqual(records.map((r) => JSON.parse(JSON.stringify(r))));
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, flushed: 5, failures: 0 });
  });

  it('appends to an existing file across sinks', async () => {
    const path = join(dir, 'usage.jsonl');
    for (const n of [0, 1]) {
      const sink = new JsonlFileSink({ path });
      sink.write(record(n));
      await sink.close();
    }
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    expect(lines.map((line) => (JSON.parse(line) as RequestRecord).id)).toEqual(['r0', 'r1']);
  });
});
