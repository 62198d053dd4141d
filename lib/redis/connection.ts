// The connection plumbing every Redis-backed piece shares: the client it is given or opens, calls
// bounded by `commandTimeoutMs`, a wait for the connection, and Lua scripts run by EVALSHA.
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError, isStoreUnavailableError } from '../errors/store.js';

/** Redis errors that mean "not now" rather than "wrong" (OOM: Redis refuses writes at maxmemory). */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS|OOM)\b/;
const URL_PATTERN = /^rediss?:\/\//i;

/** A Lua script and its SHA-1, for EVALSHA. */
export interface RedisScript {
  readonly lua: string;
  readonly sha: string;
}

/**
 * `lua` with its SHA-1, frozen; build each once, at module load.
 *
 * @example
 * const SCRIPTS = Object.freeze({ acquire: redisScript(ACQUIRE_SCRIPT) });
 */
export function redisScript(lua: string): RedisScript {
  return Object.freeze({ lua, sha: createHash('sha1').update(lua).digest('hex') });
}

/** Reconnect backoff of the connections llmux opens: 100 ms doubling up to 2 s. */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 6), 2_000);
}

/**
 * The options of a connection llmux opens from a URL: no offline queue and one retry per request,
 * so calls fail fast while Redis is down, and reconnection with {@link reconnectDelayMs}.
 * `disconnectTimeoutMs` is the piece's `commandTimeoutMs`: ioredis waits that long for a socket to
 * end, even one that is already gone.
 */
export function ownConnectionOptions(disconnectTimeoutMs: number): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    disconnectTimeout: disconnectTimeoutMs,
    retryStrategy: reconnectDelayMs,
  };
}

/**
 * True when `value` looks like an ioredis client (standalone or Sentinel): it can run and load
 * scripts, be duplicated, and has a status and options.
 */
export function isRedisClient(value: unknown): value is Redis {
  const client = value as Partial<Redis> | null;
  return (
    typeof client === 'object' &&
    client !== null &&
    typeof client.evalsha === 'function' &&
    typeof client.script === 'function' &&
    typeof client.duplicate === 'function' &&
    typeof client.status === 'string' &&
    typeof client.options === 'object'
  );
}

/** Where a Redis-backed piece gets its connection: the host's client or a URL, exactly one. */
export interface RedisSource {
  redis?: Redis | undefined;
  url?: string | undefined;
}

/** The client a piece talks to, and whether it opened it (and so must quit it on `close()`). */
export interface OpenedRedis {
  readonly client: Redis;
  readonly ownsClient: boolean;
}

/**
 * The host's client of `source`, or a client opened from its URL with `connection`, listened to
 * by `onError` (ioredis reconnects by itself; a listener keeps an error event from ever being
 * unhandled). Throws a TypeError prefixed with `owner` unless exactly one of `redis` and `url` is
 * given, `redis` is an ioredis client and `url` a `redis://` or `rediss://` URL. The URL may hold
 * a password: it is never echoed.
 *
 * @example
 * const { client, ownsClient } = openRedisClient('RedisKeyStore', options, ownConnectionOptions(500), onError);
 */
export function openRedisClient(
  owner: string,
  source: RedisSource,
  connection: RedisOptions,
  onError: (err: unknown) => void,
): OpenedRedis {
  const { redis, url } = source;
  if ((redis === undefined) === (url === undefined)) {
    throw new TypeError(`${owner}: give redis (an ioredis client) or url, exactly one of them`);
  }
  if (redis !== undefined) {
    if (!isRedisClient(redis)) {
      throw new TypeError(`${owner}: redis must be an ioredis client (new Redis(...))`);
    }
    return { client: redis, ownsClient: false };
  }
  if (typeof url !== 'string' || !URL_PATTERN.test(url)) {
    throw new TypeError(`${owner}: url must be a redis:// or rediss:// URL`);
  }
  const client = new Redis(url, connection);
  client.on('error', onError);
  return { client, ownsClient: true };
}

/**
 * `work`, or a rejection with a {@link StoreUnavailableError} once `timeoutMs` passed. The timer
 * is unref'd and cleared; a late rejection of the abandoned `work` is never unhandled. Errors of
 * `work` pass through as they are (see {@link toStoreError}).
 */
export async function withinTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new StoreUnavailableError(`Redis did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
  });
  work.catch(ignore);
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A Redis error as the pieces report it: unreachable, closed or busy is a
 * {@link StoreUnavailableError} (with the original as `cause`); a reply error Redis answered
 * otherwise is a fault (a bug, a foreign key under the prefix), not an outage, and stays as it is.
 */
export function toStoreError(err: unknown): Error {
  if (isStoreUnavailableError(err)) return err;
  if (err instanceof Error && err.name === 'ReplyError' && !TRANSIENT_REPLY.test(err.message)) return err;
  return new StoreUnavailableError('Redis is unavailable', { cause: err });
}

/**
 * Runs `target` by EVALSHA on `key` (or on no key). After a restart or SCRIPT FLUSH Redis has
 * forgotten the script: it is then sent again, by SCRIPT LOAD and EVALSHA (`reload: 'load'`, the
 * default) or by EVAL (`'eval'`), and run once more.
 */
export async function evalScript(
  client: Redis,
  target: RedisScript,
  key: string | undefined,
  args: readonly string[],
  reload: 'load' | 'eval' = 'load',
): Promise<unknown> {
  try {
    return await evalShaOnce(client, target, key, args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    if (reload === 'eval') {
      return key === undefined
        ? await client.eval(target.lua, 0, ...args)
        : await client.eval(target.lua, 1, key, ...args);
    }
    await client.script('LOAD', target.lua);
    return await evalShaOnce(client, target, key, args);
  }
}

function evalShaOnce(
  client: Redis,
  target: RedisScript,
  key: string | undefined,
  args: readonly string[],
): Promise<unknown> {
  return key === undefined
    ? client.evalsha(target.sha, 0, ...args)
    : client.evalsha(target.sha, 1, key, ...args);
}

/**
 * One wait for a client's connection to become ready, shared by every call that needs it, so
 * calls fail fast rather than queue while Redis is down. One per client a piece talks to.
 */
export class ConnectionWait {
  readonly #client: Redis;
  #connecting: Promise<void> | undefined = undefined;
  #stopConnecting: ((err: Error) => void) | undefined = undefined;
  /** Set by `stop(message, true)`: every later call is refused with this message. */
  #refusal: string | undefined = undefined;

  constructor(client: Redis) {
    this.#client = client;
  }

  /**
   * Undefined when the client is ready; a wait for it while it is connecting (a lazy client is
   * told to connect); a rejection with a {@link StoreUnavailableError} at once while it is down
   * (reconnecting, closed) or once `stop` refused further calls.
   */
  whenReady(): Promise<void> | undefined {
    const client = this.#client;
    const status = client.status;
    if (status === 'ready') return undefined;
    if (this.#refusal !== undefined) return Promise.reject(new StoreUnavailableError(this.#refusal));
    if (status !== 'wait' && status !== 'connecting' && status !== 'connect') {
      return Promise.reject(new StoreUnavailableError(`the Redis connection is ${status}`));
    }
    this.#connecting ??= new Promise<void>((resolve, reject) => {
      const settle = (err?: Error): void => {
        client.off('ready', onReady);
        client.off('close', onClose);
        client.off('end', onClose);
        this.#connecting = undefined;
        this.#stopConnecting = undefined;
        if (err === undefined) resolve();
        else reject(err);
      };
      const onReady = (): void => settle();
      const onClose = (): void => settle(new StoreUnavailableError('the Redis connection closed'));
      client.on('ready', onReady);
      client.on('close', onClose);
      client.on('end', onClose);
      this.#stopConnecting = settle;
      // A lazy client connects on demand; with its offline queue off it would refuse instead.
      if (status === 'wait') client.connect().catch(ignore);
    });
    return this.#connecting;
  }

  /**
   * Rejects the wait in progress with a {@link StoreUnavailableError} of `message`; with
   * `refuseLater` (a client the piece opened and is quitting), every later call that finds the
   * client not ready is refused with it too.
   */
  stop(message: string, refuseLater: boolean): void {
    if (refuseLater) this.#refusal = message;
    this.#stopConnecting?.(new StoreUnavailableError(message));
  }
}

function ignore(): void {}
