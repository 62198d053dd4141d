// The Redis the Redis-backed suites run against, checked once per file before anything connects:
// without it a file fails at once with one message (not dozens of failures and a hung run), or,
// under LLMUX_SKIP_REDIS=1, skips its suites and says so.
import { describe, expect } from '@jest/globals';
import { Redis, type RedisOptions } from 'ioredis';
import { basename } from 'node:path';

/** Where the suites find Redis: `REDIS_URL`, or the default local server. */
export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
/** How long the check waits for a PING. */
const CHECK_MS = 3_000;

/** The Redis of a test file, from {@link requireRedis}. */
export interface TestRedis {
  url: string;
  host: string;
  port: number;
  /** True under `LLMUX_SKIP_REDIS=1`: the file's suites are registered as skipped. */
  skipped: boolean;
  /** `describe`; under `LLMUX_SKIP_REDIS=1`, `describe.skip` with a title that says why. */
  describe: typeof describe;
  /** A client of this Redis; under `LLMUX_SKIP_REDIS=1`, one that never connects. */
  client(options?: RedisOptions): Redis;
}

/**
 * Checks Redis for the calling test file: call it (awaited, at the top of the file) before any
 * client is made. Throws one message when Redis does not answer, unless `LLMUX_SKIP_REDIS=1`.
 */
export async function requireRedis(): Promise<TestRedis> {
  const { hostname, port } = new URL(REDIS_URL);
  const base = { url: REDIS_URL, host: hostname || '127.0.0.1', port: Number(port || 6379) };
  if (process.env.LLMUX_SKIP_REDIS === '1') {
    const file = basename(expect.getState().testPath ?? 'this file');
    process.stderr.write(`LLMUX_SKIP_REDIS=1: the Redis suites of ${file} are skipped on purpose\n`);
    return {
      ...base,
      skipped: true,
      describe: skippedDescribe(),
      client: (options) => new Redis(REDIS_URL, { ...options, lazyConnect: true }),
    };
  }
  const failure = await ping();
  if (failure !== undefined) {
    const error = new Error(
      `Redis is required at ${REDIS_URL} (${failure}): start one with ` +
        "`redis-server --daemonize yes --port 6379 --save ''` (or point REDIS_URL at one), " +
        'or set LLMUX_SKIP_REDIS=1 to skip the Redis suites on purpose',
    );
    // The message is the whole story: no stack under it.
    error.stack = error.message;
    throw error;
  }
  return { ...base, skipped: false, describe, client: (options) => new Redis(REDIS_URL, options ?? {}) };
}

/** Resolves to why Redis did not answer a PING within {@link CHECK_MS}, or to undefined. */
async function ping(): Promise<string | undefined> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: CHECK_MS,
    commandTimeout: CHECK_MS,
  });
  let cause: Error | undefined;
  client.on('error', (err: Error) => (cause ??= err));
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (err) {
    return (cause ?? (err as Error)).message;
  } finally {
    // On a closed client, disconnect() would arm a 2 s timer that nothing clears.
    if (client.status !== 'end') client.disconnect();
  }
}

/** `describe.skip`, every title saying why, for the call shapes the suites use (`.each` too). */
function skippedDescribe(): typeof describe {
  const why = (title: unknown) => `${String(title)} (skipped: LLMUX_SKIP_REDIS=1)`;
  const skip = (title: string, fn: () => void) => describe.skip(why(title), fn);
  const each =
    (table: readonly unknown[]) =>
    (title: string, fn: (...args: never[]) => void): void =>
      describe.skip.each(table as unknown[][])(why(title), fn as (...args: unknown[]) => void);
  return Object.assign(skip, { each, skip, only: skip }) as unknown as typeof describe;
}
