// The shared KeyStore: keys, teams, users and their accounting in Redis (ioredis), so several
// instances enforce one set of budgets and limits. Each decision is one Lua script; every round
// trip is bounded by a timeout, and an unreachable Redis is a clear `store_unavailable` error.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  ConnectionWait,
  evalScript,
  openRedisClient,
  ownConnectionOptions,
  redisScript,
  toStoreError,
  withinTimeout,
  type RedisScript,
} from '../redis/connection.js';
import { OptionReader } from '../options.js';
import { STORE_ERROR_MODES } from '../redis/options.js';
import { isStoreUnavailableError } from '../errors/store.js';
import { KeyStoreError, isKeyStoreError } from './errors.js';
import {
  ADMIT_SCRIPT,
  AUTH_SCRIPT,
  LOOKUP_SCRIPT,
  CREATE_KEY_SCRIPT,
  CREATE_RECORD_SCRIPT,
  DELETE_SCRIPT,
  READ_SCRIPT,
  SETTLE_SCRIPT,
  SPEND_SCRIPT,
  UPDATE_SCRIPT,
} from './redis-scripts.js';
import { resolveSeed, withEntry, type KeyStoreSeed, type ResolvedSeed } from './seed.js';
import type {
  Admission,
  ApiKey,
  AuthFailureState,
  KeyLookup,
  KeyStore,
  RateLimitState,
  RefusalReason,
  Team,
  User,
} from './types.js';
import { MS_PER_UTC_DAY, msUntilNextUtcMidnight, utcDayNumber } from './utc.js';
import {
  BUDGET_EPSILON_USD,
  MAX_MODELS_PER_RECORD,
  OTHER_MODELS,
  PARALLEL_RETRY_AFTER_MS,
  inUse,
  resolveAccountingOptions,
  type AccountingOptions,
} from './validate.js';
import {
  checkNewRecord,
  emptyCounts,
  KeyStoreFront,
  SPEND_COUNTS,
  unknownKey,
  type CheckedAdmission,
  type CheckedSettlement,
  type RecordKind,
  type SpendBucket,
} from './store-front.js';

/** Options of {@link RedisKeyStore}. Give `redis` or `url`, not both. */
export interface RedisKeyStoreOptions extends AccountingOptions {
  /**
   * The host's ioredis client (standalone or Sentinel; not a `Cluster`). The store never closes it. For fast failure while Redis is down,
   * create it with `enableOfflineQueue: false` and a small `maxRetriesPerRequest`; the store
   * bounds every call by `commandTimeoutMs` either way. Its `keyPrefix` is honoured.
   */
  redis?: Redis;
  /**
   * A `redis://` or `rediss://` URL; the store then creates its own client (no offline queue,
   * one retry per request, reconnecting with backoff up to 2 s) and quits it on `close()`.
   */
  url?: string;
  /**
   * Prefix of every key the store writes. Put a hash tag in it (`{llmux}:`) on a Redis Cluster
   * proxy that needs a script's keys in one slot.
   * @defaultValue `'llmux:'`
   */
  prefix?: string;
  /**
   * What `admit` and the failed-auth limiter do while Redis cannot be reached (connection
   * errors, timeouts): `'fail-closed'` throws a {@link StoreUnavailableError} (keyAuth answers
   * 503 `store_unavailable` with `Retry-After`); `'fail-open'` admits the request unaccounted
   * (no budget, rate or parallel limit holds for it, and its spend is never recorded), reports
   * addresses as not blocked, and answers `findKeyByHash`/`getKey`/`getTeam`/`getUser` from the
   * last record this instance read (up to 10 000; a key it never saw still throws).
   * @defaultValue `'fail-closed'`
   */
  onStoreError?: 'fail-closed' | 'fail-open';
  /**
   * Longest wait for one Redis round trip (connecting included), in ms; past it the call fails
   * with `store_unavailable`. A command that timed out may still run in Redis later: an
   * admission that does holds its reservation until `reservationTtlMs`.
   * @defaultValue 500
   */
  commandTimeoutMs?: number;
  /**
   * How long a reservation holds its budget, parallel slot and team/user share without being
   * settled, in ms (by the `nowMs` of later admissions): so an instance that crashed mid-request
   * cannot hold them for ever. A request that outlives it is still charged when it settles
   * (its record is kept twice as long), but no longer counts against limits meanwhile.
   * @defaultValue 3_600_000 (one hour)
   */
  reservationTtlMs?: number;
  /**
   * Clock for `createdAt`, ms since the epoch. Admission and settlement take `nowMs` instead.
   * @defaultValue `Date.now`
   */
  clock?: () => number;
  /**
   * Teams, users and keys written on first use (every method waits for it; `ready()` too).
   * Idempotent, so every instance can seed the same Redis: an entry whose `id` exists (a key
   * without `id`: whose hash exists) is left as stored. Teams and users therefore need an `id`.
   * A bad entry throws from the constructor; a reference to a missing team or user rejects
   * every call. Plaintext keys are hashed (with `pepper`) and never written.
   */
  seed?: KeyStoreSeed;
}

/** Every script of the store; immutable. */
const SCRIPTS = Object.freeze({
  read: redisScript(READ_SCRIPT),
  createKey: redisScript(CREATE_KEY_SCRIPT),
  createRecord: redisScript(CREATE_RECORD_SCRIPT),
  update: redisScript(UPDATE_SCRIPT),
  remove: redisScript(DELETE_SCRIPT),
  admit: redisScript(ADMIT_SCRIPT),
  settle: redisScript(SETTLE_SCRIPT),
  spend: redisScript(SPEND_SCRIPT),
  auth: redisScript(AUTH_SCRIPT),
  lookup: redisScript(LOOKUP_SCRIPT),
});

const OWNER = 'RedisKeyStore';
/** Most records remembered for answering reads while failing open. */
const MAX_REMEMBERED_RECORDS = 10_000;
/** Record fields stored as numbers, booleans and JSON (all others are strings). */
const NUMBER_FIELDS: ReadonlySet<string> = new Set([
  'budgetUsd',
  'rpm',
  'tpm',
  'maxParallel',
  'dailyRequests',
  'dailyTokens',
  'expiresAt',
  'createdAt',
]);
const JSON_FIELDS: ReadonlySet<string> = new Set(['models', 'metadata']);
const NOT_BLOCKED: AuthFailureState = Object.freeze({ blocked: false, retryAfterMs: 0 });

type Kind = RecordKind;
/** A record as READ_SCRIPT returns it: flat fields, spend, flat spend by model. */
type RecordReply = [string[], string, string[]];

/**
 * The {@link KeyStore} on Redis, for hosts that run several instances: every instance sees one
 * set of keys, budgets, windows and quotas, and each admission, settlement and failed-auth count
 * is one atomic Lua script (loaded once with SCRIPT LOAD, run by EVALSHA, reloaded after a
 * SCRIPT FLUSH or a restart).
 *
 * - Same behaviour as `MemoryKeyStore` (the shared test suite runs against both): same
 *   validation and codes, budgets with reservations for key, team and user, GCRA rpm/tpm
 *   windows, daily quotas by the UTC day of `nowMs`, `maxParallel`, idempotent settlement.
 *   Scripts never read a clock: all time is the `nowMs` the caller passes.
 * - Only key hashes are stored (`<prefix>hash:<hash>` maps a hash to its key id); a seed's
 *   plaintext keys are hashed before they leave the process.
 * - Reservations expire after `reservationTtlMs`; spend buckets after `spendRetentionDays`
 *   (pruned as the days go by, and by key TTLs); the failed-auth limiter keeps at most
 *   `authFailures.maxTrackedAddresses` addresses.
 * - Unreachable Redis: see `onStoreError` and {@link StoreUnavailableError}. The store never
 *   throws from an event, reconnects by itself, and `ping()` tells the health router.
 *
 * @throws TypeError at construction for a bad option; KeyStoreError for a seed entry it refuses.
 * @example
 * const store = new RedisKeyStore({ url: process.env.REDIS_URL, prefix: 'gateway:' });
 * app.get('/health/*', healthRouter({ stores: [{ name: 'keys', ping: () => store.ping() }] }));
 * app.use('/v1', bodyLimit(), keyAuth({ store }), streamRelay({ upstream }));
 * process.on('SIGTERM', () => void store.close());
 */
export class RedisKeyStore extends KeyStoreFront implements KeyStore {
  private readonly client: Redis;
  private readonly ownsClient: boolean;
  /** The client's own `keyPrefix` and ours: scripts build their key names from it. */
  private readonly keyPrefix: string;
  private readonly failOpen: boolean;
  private readonly timeoutMs: number;
  private readonly holdMs: number;
  private readonly clock: () => number;
  private readonly toleranceUsd: number;
  private readonly authMax: number;
  private readonly authWindowMs: number;
  private readonly authMaxTracked: number;
  private readonly retentionDays: number;
  private readonly reservationPrefix: string;
  private reservationCount = 0;
  /** Fail-open only: the last record read per `kind:id` / `hash:hash`, least recent first. */
  private readonly remembered = new Map<string, ApiKey | Team | User>();
  /** The seed still to write, and the run writing it. */
  private seedPending: ResolvedSeed | undefined;
  private seedRun: Promise<void> | undefined;
  /** One wait for the connection to become ready, shared by every call that needs it. */
  private readonly connection: ConnectionWait;
  private closing: Promise<void> | undefined;
  private readonly onClientError = (): void => {
    // Connection errors surface as `store_unavailable` on the calls they fail; ioredis
    // reconnects by itself. Listening keeps an error event from ever being unhandled.
  };

  constructor(options: RedisKeyStoreOptions) {
    super();
    new OptionReader(OWNER).options(options, true);
    const accounting = resolveAccountingOptions('RedisKeyStore', options);
    this.toleranceUsd = accounting.toleranceUsd;
    this.authMax = accounting.authMax;
    this.authWindowMs = accounting.authWindowMs;
    this.authMaxTracked = accounting.authMaxTracked;
    this.retentionDays = accounting.retentionDays;
    // `null` has always meant the default prefix here.
    const read = new OptionReader(OWNER);
    const prefix = read.string('prefix', options.prefix ?? undefined, 'llmux:');
    this.failOpen =
      read.oneOf('onStoreError', options.onStoreError, STORE_ERROR_MODES, 'fail-closed') === 'fail-open';
    this.timeoutMs = read.durationMs('commandTimeoutMs', options.commandTimeoutMs, 500);
    this.holdMs = read.positiveInteger('reservationTtlMs', options.reservationTtlMs, 3_600_000);
    const clock = options.clock ?? Date.now;
    if (typeof clock !== 'function') {
      throw new TypeError(`RedisKeyStore: clock must be a function, got ${String(clock)}`);
    }
    this.clock = clock;
    if (options.seed !== undefined) this.seedPending = checkSeed(options.seed, accounting.pepper);

    const opened = openRedisClient(OWNER, options, ownConnectionOptions(this.timeoutMs), this.onClientError);
    this.client = opened.client;
    this.ownsClient = opened.ownsClient;
    this.connection = new ConnectionWait(this.client);
    this.keyPrefix = (this.client.options.keyPrefix ?? '') + prefix;
    const instance = randomBytes(9).toString('base64url');
    this.reservationPrefix = `res_${instance}_`;
    // Seeding starts now; a failure here is reported by the first call (or `ready()`).
    this.seeded()?.catch(() => {});
  }

  /**
   * Resolves when the seed (if any) is in Redis; rejects with the error that stopped it. Await
   * it at startup to fail fast on a bad seed; every method waits for it anyway.
   */
  async ready(): Promise<void> {
    await this.seeded();
  }

  /** Resolves when Redis answers a PING within `commandTimeoutMs`; for the health router. */
  async ping(): Promise<void> {
    await this.bounded(this.pingOnce());
  }

  protected async insertKey(values: Record<string, unknown>): Promise<ApiKey> {
    await this.seeded();
    return (await this.createKeyIn(values, 'create'))!;
  }

  protected async insertRecord(kind: 'team' | 'user', values: Record<string, unknown>): Promise<Team | User> {
    await this.seeded();
    return (await this.createRecordIn(kind, values, 'create'))!;
  }

  protected readRecord(kind: RecordKind, id: string): Promise<ApiKey | Team | User | undefined> {
    return this.readOne(kind, 'id', id, `${kind}:${id}`);
  }

  protected readKeyByHash(hash: string): Promise<ApiKey | undefined> {
    return this.readOne('key', 'hash', hash, `hash:${hash}`) as Promise<ApiKey | undefined>;
  }

  protected async readAll(kind: RecordKind): Promise<(ApiKey | Team | User)[]> {
    await this.seeded();
    const records = (await this.exec(SCRIPTS.read, [this.keyPrefix, kind, 'all'])) as RecordReply[];
    return records.map(decodeRecord);
  }

  protected async patchRecord(
    kind: RecordKind,
    id: string,
    values: Record<string, unknown>,
  ): Promise<ApiKey | Team | User | undefined> {
    await this.seeded();
    const set: Record<string, unknown> = {};
    const cleared: string[] = [];
    for (const field of Object.keys(values)) {
      if (values[field] === null) cleared.push(field);
      else set[field] = values[field];
    }
    const teamId = values.teamId;
    const teamMode = kind !== 'user' || teamId === undefined ? 'keep' : teamId === null ? 'clear' : 'set';
    const pairs = encodeFields(set);
    const reply = (await this.exec(SCRIPTS.update, [
      this.keyPrefix,
      kind,
      id,
      teamMode,
      typeof teamId === 'string' ? teamId : '',
      String(pairs.length / 2),
      ...pairs,
      ...cleared,
    ])) as [string, ...unknown[]];
    if (reply[0] === 'missing') return undefined;
    if (reply[0] === 'error') throw refusalOf(reply[1] as string, reply[2] as string, kind);
    return decodeRecord(reply[1] as RecordReply);
  }

  protected async revoke(id: string): Promise<boolean> {
    await this.seeded();
    const reply = (await this.exec(SCRIPTS.update, [
      this.keyPrefix,
      'key',
      id,
      'keep',
      '',
      '1',
      'revoked',
      '1',
    ])) as [string];
    return reply[0] === 'ok';
  }

  protected async removeRecord(kind: 'team' | 'user', id: string): Promise<boolean> {
    await this.seeded();
    const reply = (await this.exec(SCRIPTS.remove, [this.keyPrefix, kind, id])) as [string, string?];
    if (reply[0] === 'in_use') throw inUse(kind, reply[1]!);
    return reply[0] === 'ok';
  }

  protected async admitChecked(request: CheckedAdmission): Promise<Admission> {
    const { keyId, model, costUsd, tokens, nowMs } = request;
    const reservationId =
      request.reservationId ?? this.reservationPrefix + (++this.reservationCount).toString(36);
    let reply: string[];
    try {
      await this.seeded();
      reply = (await this.exec(SCRIPTS.admit, [
        this.keyPrefix,
        keyId,
        String(costUsd),
        String(tokens),
        String(nowMs),
        String(utcDayNumber(nowMs)),
        String(msUntilNextUtcMidnight(nowMs)),
        reservationId,
        model === undefined ? '0' : '1',
        model ?? '',
        String(this.holdMs),
        String(2 * this.holdMs),
        String(this.toleranceUsd),
        String(BUDGET_EPSILON_USD),
        String(PARALLEL_RETRY_AFTER_MS),
        String(this.retentionDays),
        String(MAX_MODELS_PER_RECORD),
        OTHER_MODELS,
        String(MS_PER_UTC_DAY),
      ])) as string[];
    } catch (err) {
      if (this.failOpen && isStoreUnavailableError(err)) {
        // Admitted unaccounted, under the id the admission was sent with: if that admission still
        // lands in Redis, the settlement (queued until Redis answers) closes it; if it never does,
        // the settlement leaves a tombstone that makes a late landing reserve nothing.
        return { ok: true, reservationId, rateLimit: undefined };
      }
      throw err;
    }
    if (reply[0] === 'not_found') throw unknownKey();
    if (reply[0] === 'duplicate') {
      throw new KeyStoreError('invalid_field', 'reservationId', 'reservationId is already in use');
    }
    if (reply[0] === 'ok') return { ok: true, reservationId, rateLimit: rateLimitAt(reply, 1) };
    return {
      ok: false,
      reason: reply[1] as RefusalReason,
      subject: reply[2] as RecordKind,
      retryAfterMs: reply[3] === '' ? undefined : Number(reply[3]),
      rateLimit: rateLimitAt(reply, 4),
    };
  }

  protected async settleChecked(
    reservationId: string,
    settled: CheckedSettlement | undefined,
  ): Promise<boolean> {
    const figures =
      settled === undefined
        ? ['1', '0', '0', '0', '0', '0', '']
        : [
            '0',
            String(settled.costUsd),
            String(settled.promptTokens),
            String(settled.completionTokens),
            String(settled.nowMs),
            settled.model === undefined ? '0' : '1',
            settled.model ?? '',
          ];
    const classes =
      settled === undefined
        ? ['0', '0', '0', '0', '0']
        : [
            String(settled.cachedTokens),
            String(settled.cacheWriteTokens),
            String(settled.reasoningTokens),
            String(settled.audioPromptTokens),
            String(settled.audioCompletionTokens),
          ];
    await this.seeded();
    const done = await this.exec(SCRIPTS.settle, [
      this.keyPrefix,
      reservationId,
      ...figures,
      String(this.retentionDays),
      String(MAX_MODELS_PER_RECORD),
      OTHER_MODELS,
      String(MS_PER_UTC_DAY),
      ...classes,
      String(2 * this.holdMs),
    ]);
    return done === 1;
  }

  protected async spendBuckets(fromDay: number, toDay: number): Promise<SpendBucket[]> {
    const from = fromDay === -Infinity ? '-inf' : String(fromDay);
    const to = toDay === Infinity ? '+inf' : String(toDay);
    await this.seeded();
    const flat = (await this.exec(SCRIPTS.spend, [this.keyPrefix, from, to])) as string[];
    const buckets: SpendBucket[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const [keyId, teamId, userId, model] = JSON.parse(flat[i]!) as [
        string,
        string | null,
        string | null,
        string | null,
      ];
      const sums = flat[i + 1]!.split(' ').map(Number);
      const bucket: SpendBucket = { keyId, teamId, userId, model, ...emptyCounts() };
      bucket.spendUsd = sums[0] ?? 0;
      SPEND_COUNTS.forEach((count, at) => {
        bucket[count] = sums[at + 1] ?? 0;
      });
      buckets.push(bucket);
    }
    return buckets;
  }

  /**
   * Quits the client the store created (a host's client is left open) and stops waiting for a
   * connection. Idempotent; safe before use and concurrently. Calls after it fail with
   * `store_unavailable` on a client the store created.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.connection.stop('the key store is closed', this.ownsClient);
    if (!this.ownsClient) return;
    const client = this.client;
    if (client.status === 'ready') {
      try {
        await this.bounded(client.quit());
      } catch {
        // Quitting is a courtesy; disconnecting below ends the connection regardless.
      }
    }
    client.disconnect();
    client.off('error', this.onClientError);
  }

  protected async authFailures(
    address: string,
    now: number,
    mode: 'read' | 'record',
  ): Promise<AuthFailureState> {
    let reply: [string, string];
    try {
      await this.seeded();
      reply = (await this.exec(SCRIPTS.auth, [
        this.keyPrefix,
        address,
        String(now),
        String(this.authMax),
        String(this.authWindowMs),
        String(this.authMaxTracked),
        mode,
      ])) as [string, string];
    } catch (err) {
      if (this.failOpen && isStoreUnavailableError(err)) return { ...NOT_BLOCKED };
      throw err;
    }
    return reply[0] === '1' ? { blocked: true, retryAfterMs: Number(reply[1]) } : { ...NOT_BLOCKED };
  }

  protected async lookup(hash: string | undefined, address: string, now: number): Promise<KeyLookup> {
    let reply: [RecordReply[], string, string];
    try {
      await this.seeded();
      reply = (await this.exec(SCRIPTS.lookup, [
        this.keyPrefix,
        hash ?? '',
        address,
        String(now),
        String(this.authMax),
        String(this.authWindowMs),
      ])) as [RecordReply[], string, string];
    } catch (err) {
      if (!(this.failOpen && isStoreUnavailableError(err))) throw err;
      // Failing open: a key this instance read before still authenticates; no address is blocked.
      const known = hash === undefined ? undefined : this.remembered.get(`hash:${hash}`);
      if (hash !== undefined && known === undefined) throw err;
      return {
        key: known === undefined ? undefined : (structuredClone(known) as ApiKey),
        failures: { ...NOT_BLOCKED },
      };
    }
    const [records, blocked, retryAfterMs] = reply;
    const key = records.length === 0 ? undefined : (decodeRecord(records[0]!) as ApiKey);
    if (key !== undefined && this.failOpen) this.remember(`hash:${hash}`, key);
    return {
      key,
      failures: blocked === '1' ? { blocked: true, retryAfterMs: Number(retryAfterMs) } : { ...NOT_BLOCKED },
    };
  }

  private async readOne(
    kind: Kind,
    mode: 'id' | 'hash',
    value: string,
    cacheKey: string,
  ): Promise<ApiKey | Team | User | undefined> {
    let records: RecordReply[];
    try {
      await this.seeded();
      records = (await this.exec(SCRIPTS.read, [this.keyPrefix, kind, mode, value])) as RecordReply[];
    } catch (err) {
      const known = this.failOpen && isStoreUnavailableError(err) ? this.remembered.get(cacheKey) : undefined;
      if (known === undefined) throw err;
      return structuredClone(known);
    }
    if (records.length === 0) return undefined;
    const record = decodeRecord(records[0]!);
    if (this.failOpen) this.remember(cacheKey, record);
    return record;
  }

  private remember(cacheKey: string, record: ApiKey | Team | User): void {
    const remembered = this.remembered;
    remembered.delete(cacheKey);
    if (remembered.size >= MAX_REMEMBERED_RECORDS) remembered.delete(remembered.keys().next().value!);
    remembered.set(cacheKey, structuredClone(record));
  }

  /** Writes a checked key; in `seed` mode one that exists is left as it is (undefined). */
  private async createKeyIn(
    values: Record<string, unknown>,
    mode: 'create' | 'seed',
  ): Promise<ApiKey | undefined> {
    const given = values.id as string | undefined;
    for (;;) {
      const id = given ?? newId('key');
      const reply = (await this.exec(SCRIPTS.createKey, [
        this.keyPrefix,
        id,
        values.hash as string,
        (values.teamId as string | undefined) ?? '',
        (values.userId as string | undefined) ?? '',
        mode,
        given === undefined ? '0' : '1',
        ...encodeFields({ ...values, id, revoked: false, createdAt: this.clock() }),
      ])) as [string, ...unknown[]];
      if (reply[0] === 'ok') return decodeRecord(reply[1] as RecordReply) as ApiKey;
      if (reply[0] === 'exists') return undefined;
      // A generated id that is taken (astronomically unlikely) is simply drawn again.
      if (reply[1] === 'duplicate_id' && given === undefined) continue;
      throw refusalOf(reply[1] as string, reply[2] as string, 'key');
    }
  }

  /** Writes a checked team or user; in `seed` mode one that exists is left as it is (undefined). */
  private async createRecordIn(
    kind: 'team' | 'user',
    values: Record<string, unknown>,
    mode: 'create' | 'seed',
  ): Promise<Team | User | undefined> {
    const given = values.id as string | undefined;
    for (;;) {
      const id = given ?? newId(kind);
      const reply = (await this.exec(SCRIPTS.createRecord, [
        this.keyPrefix,
        kind,
        id,
        (values.teamId as string | undefined) ?? '',
        mode,
        ...encodeFields({ ...values, id, createdAt: this.clock() }),
      ])) as [string, ...unknown[]];
      if (reply[0] === 'ok') return decodeRecord(reply[1] as RecordReply) as Team | User;
      if (reply[0] === 'exists') return undefined;
      if (reply[1] === 'duplicate_id' && given === undefined) continue;
      throw refusalOf(reply[1] as string, reply[2] as string, kind);
    }
  }

  /** The pending seed run, started if needed; undefined once the seed is written (or without one). */
  private seeded(): Promise<void> | undefined {
    if (this.seedPending === undefined) return undefined;
    this.seedRun ??= this.writeSeed(this.seedPending);
    return this.seedRun;
  }

  private async writeSeed(seed: ResolvedSeed): Promise<void> {
    try {
      const inEntry = async (entry: string, create: () => Promise<unknown>): Promise<void> => {
        try {
          await create();
        } catch (err) {
          throw withEntry(err, entry);
        }
      };
      for (const [index, team] of seed.teams.entries()) {
        await inEntry(`teams[${index}]`, () =>
          this.createRecordIn('team', checkNewRecord('team', team), 'seed'),
        );
      }
      for (const [index, user] of seed.users.entries()) {
        await inEntry(`users[${index}]`, () =>
          this.createRecordIn('user', checkNewRecord('user', user), 'seed'),
        );
      }
      for (const [index, key] of seed.keys.entries()) {
        await inEntry(`keys[${index}]`, () => this.createKeyIn(checkNewRecord('key', key), 'seed'));
      }
      this.seedPending = undefined;
    } catch (err) {
      // Redis being away is no fault of the seed: the next call tries again.
      if (isStoreUnavailableError(err)) this.seedRun = undefined;
      throw err;
    }
  }

  /** Runs `script` once Redis is connected, within `commandTimeoutMs`. */
  private exec(target: RedisScript, args: string[]): Promise<unknown> {
    return this.bounded(this.evaluate(target, args));
  }

  private async evaluate(target: RedisScript, args: string[]): Promise<unknown> {
    const waiting = this.connection.whenReady();
    if (waiting !== undefined) await waiting;
    return evalScript(this.client, target, undefined, args);
  }

  private async pingOnce(): Promise<void> {
    const waiting = this.connection.whenReady();
    if (waiting !== undefined) await waiting;
    await this.client.ping();
  }

  /** `work`, or a {@link StoreUnavailableError} when it fails to reach Redis or takes too long. */
  private async bounded<T>(work: Promise<T>): Promise<T> {
    try {
      return await withinTimeout(work, this.timeoutMs);
    } catch (err) {
      throw isKeyStoreError(err) ? err : toStoreError(err);
    }
  }
}

/**
 * Checks a seed synchronously, as the memory store does at construction: its shape, every
 * entry's fields, and the ids that make seeding several instances idempotent.
 */
function checkSeed(seed: KeyStoreSeed, pepper: string | undefined): ResolvedSeed {
  const resolved = resolveSeed(seed, { pepper });
  const check = (list: object[], name: string, kind: RecordKind): void => {
    list.forEach((input, index) => {
      try {
        const values = checkNewRecord(kind, input);
        if (kind !== 'key' && values.id === undefined) {
          throw new KeyStoreError(
            'invalid_field',
            'id',
            'a Redis seed needs an id for each team and user, so every instance seeds the same one',
          );
        }
      } catch (err) {
        throw withEntry(err, `${name}[${index}]`);
      }
    });
  };
  check(resolved.teams, 'teams', 'team');
  check(resolved.users, 'users', 'user');
  check(resolved.keys, 'keys', 'key');
  return resolved;
}

/** The KeyStoreError for a refusal a script answered. */
function refusalOf(code: string, field: string, kind: Kind): KeyStoreError {
  switch (code) {
    case 'duplicate_hash':
      return new KeyStoreError('duplicate_hash', 'hash', 'a key with this hash already exists');
    case 'duplicate_id':
      return new KeyStoreError('duplicate_id', 'id', `a ${kind} with this id already exists`);
    default: {
      const target = field === 'userId' ? 'user' : 'team';
      return new KeyStoreError('invalid_field', field, `${field} names no existing ${target}`);
    }
  }
}

function newId(kind: Kind): string {
  return `${kind}_${randomBytes(12).toString('base64url')}`;
}

/** Field/value pairs for HSET: numbers as `String(n)` (exact), booleans `1`/`0`, lists and objects JSON. */
function encodeFields(values: Record<string, unknown>): string[] {
  const pairs: string[] = [];
  for (const field of Object.keys(values)) {
    const value = values[field];
    if (value === undefined || value === null) continue;
    pairs.push(
      field,
      typeof value === 'string'
        ? value
        : typeof value === 'number'
          ? String(value)
          : typeof value === 'boolean'
            ? value
              ? '1'
              : '0'
            : JSON.stringify(value),
    );
  }
  return pairs;
}

/** A fresh record object from a READ reply; nothing in it is shared. */
function decodeRecord([flat, spend, models]: RecordReply): ApiKey | Team | User {
  const record: Record<string, unknown> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const field = flat[i]!;
    const value = flat[i + 1]!;
    record[field] =
      field === 'revoked'
        ? value === '1'
        : NUMBER_FIELDS.has(field)
          ? Number(value)
          : JSON_FIELDS.has(field)
            ? JSON.parse(value)
            : value;
  }
  record.spendUsd = Number(spend);
  const byModel: [string, number][] = [];
  for (let i = 0; i < models.length; i += 2) byModel.push([models[i]!, Number(models[i + 1])]);
  record.spendByModel = Object.fromEntries(byModel);
  return record as unknown as ApiKey | Team | User;
}

/** The rate-limit state at `at` in a script's reply (limit, remaining, reset), if there is one. */
function rateLimitAt(reply: string[], at: number): RateLimitState | undefined {
  if (reply[at] === '' || reply[at] === undefined) return undefined;
  return { limit: Number(reply[at]), remaining: Number(reply[at + 1]), resetMs: Number(reply[at + 2]) };
}
