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
  AdmissionRequest,
  ApiKey,
  AuthFailureState,
  KeyPatch,
  KeyStore,
  NewApiKey,
  NewTeam,
  NewUser,
  RateLimitState,
  RefusalReason,
  Settlement,
  SpendQuery,
  SpendRow,
  Team,
  TeamPatch,
  User,
  UserPatch,
} from './types.js';
import { MS_PER_UTC_DAY, msUntilNextUtcMidnight, utcDayNumber } from './utc.js';
import {
  BUDGET_EPSILON_USD,
  KEY_CREATE_FIELDS,
  KEY_PATCH_FIELDS,
  MAX_MODELS_PER_RECORD,
  OTHER_MODELS,
  PARALLEL_RETRY_AFTER_MS,
  TEAM_CREATE_FIELDS,
  TEAM_PATCH_FIELDS,
  USER_CREATE_FIELDS,
  USER_PATCH_FIELDS,
  checkAddress,
  checkAmount,
  checkInstant,
  inUse,
  readFields,
  required,
  resolveAccountingOptions,
  type AccountingOptions,
  type Fields,
} from './validate.js';

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
});

const OWNER = 'RedisKeyStore';
/** Reservation ids `admit` hands out while failing open; `settle` ignores them. */
const FAIL_OPEN_PREFIX = 'failopen_';
/** Most records remembered for answering reads while failing open. */
const MAX_REMEMBERED_RECORDS = 10_000;
const HASH_PATTERN = /^[0-9a-f]{64}$/;
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

type Kind = 'key' | 'team' | 'user';
/** A record as READ_SCRIPT returns it: flat fields, spend, flat spend by model. */
type RecordReply = [string[], string, string[]];
type Refusal = Extract<Admission, { ok: false }>;

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
export class RedisKeyStore implements KeyStore {
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
  private readonly failOpenPrefix: string;
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
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`RedisKeyStore: options must be an object, got ${String(options)}`);
    }
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
    this.failOpenPrefix = `${FAIL_OPEN_PREFIX}${instance}_`;
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

  async createKey(input: NewApiKey): Promise<ApiKey> {
    await this.seeded();
    return (await this.createKeyIn(input, 'create'))!;
  }

  async getKey(id: string): Promise<ApiKey | undefined> {
    if (typeof id !== 'string') return undefined;
    return this.readOne('key', 'id', id, `key:${id}`) as Promise<ApiKey | undefined>;
  }

  async findKeyByHash(hash: string): Promise<ApiKey | undefined> {
    if (typeof hash !== 'string') return undefined;
    const lower = hash.toLowerCase();
    // Stored hashes are 64 hex digits: anything else is unknown without asking Redis.
    if (!HASH_PATTERN.test(lower)) return undefined;
    return this.readOne('key', 'hash', lower, `hash:${lower}`) as Promise<ApiKey | undefined>;
  }

  async listKeys(): Promise<ApiKey[]> {
    return this.readAll('key') as Promise<ApiKey[]>;
  }

  async updateKey(id: string, patch: KeyPatch): Promise<ApiKey | undefined> {
    return this.update('key', id, patch, KEY_PATCH_FIELDS) as Promise<ApiKey | undefined>;
  }

  async revokeKey(id: string): Promise<boolean> {
    if (typeof id !== 'string') return false;
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

  async createTeam(input: NewTeam): Promise<Team> {
    await this.seeded();
    return (await this.createRecordIn('team', input, 'create')) as Team;
  }

  async getTeam(id: string): Promise<Team | undefined> {
    if (typeof id !== 'string') return undefined;
    return this.readOne('team', 'id', id, `team:${id}`) as Promise<Team | undefined>;
  }

  async listTeams(): Promise<Team[]> {
    return this.readAll('team') as Promise<Team[]>;
  }

  async updateTeam(id: string, patch: TeamPatch): Promise<Team | undefined> {
    return this.update('team', id, patch, TEAM_PATCH_FIELDS) as Promise<Team | undefined>;
  }

  async deleteTeam(id: string): Promise<boolean> {
    return this.remove('team', id);
  }

  async createUser(input: NewUser): Promise<User> {
    await this.seeded();
    return (await this.createRecordIn('user', input, 'create')) as User;
  }

  async getUser(id: string): Promise<User | undefined> {
    if (typeof id !== 'string') return undefined;
    return this.readOne('user', 'id', id, `user:${id}`) as Promise<User | undefined>;
  }

  async listUsers(): Promise<User[]> {
    return this.readAll('user') as Promise<User[]>;
  }

  async updateUser(id: string, patch: UserPatch): Promise<User | undefined> {
    return this.update('user', id, patch, USER_PATCH_FIELDS) as Promise<User | undefined>;
  }

  async deleteUser(id: string): Promise<boolean> {
    return this.remove('user', id);
  }

  async admit(request: AdmissionRequest): Promise<Admission> {
    if (typeof request !== 'object' || request === null) {
      throw new KeyStoreError('invalid_field', undefined, 'admission request must be an object');
    }
    const cost = checkAmount(request.estimatedCostUsd, 'estimatedCostUsd');
    const tokens = checkAmount(request.estimatedTokens, 'estimatedTokens');
    const now = checkInstant(request.nowMs, 'nowMs');
    if (typeof request.keyId !== 'string') throw notFoundKey();
    const hasModel = typeof request.model === 'string';
    const reservationId = this.reservationPrefix + (++this.reservationCount).toString(36);
    let reply: string[];
    try {
      await this.seeded();
      reply = (await this.exec(SCRIPTS.admit, [
        this.keyPrefix,
        request.keyId,
        String(cost),
        String(tokens),
        String(now),
        String(utcDayNumber(now)),
        String(msUntilNextUtcMidnight(now)),
        reservationId,
        hasModel ? '1' : '0',
        hasModel ? (request.model as string) : '',
        String(this.holdMs),
        String(2 * this.holdMs),
        String(this.toleranceUsd),
        String(BUDGET_EPSILON_USD),
        String(PARALLEL_RETRY_AFTER_MS),
      ])) as string[];
    } catch (err) {
      if (this.failOpen && isStoreUnavailableError(err)) {
        return {
          ok: true,
          reservationId: this.failOpenPrefix + (++this.reservationCount).toString(36),
          rateLimit: undefined,
        };
      }
      throw err;
    }
    if (reply[0] === 'not_found') throw notFoundKey();
    if (reply[0] === 'ok') return { ok: true, reservationId, rateLimit: rateLimitAt(reply, 1) };
    const refusal: Refusal = {
      ok: false,
      reason: reply[1] as RefusalReason,
      subject: reply[2] as Kind,
      retryAfterMs: reply[3] === '' ? undefined : Number(reply[3]),
      rateLimit: rateLimitAt(reply, 4),
    };
    return refusal;
  }

  async settle(reservationId: string, settlement: Settlement): Promise<void> {
    if (typeof reservationId !== 'string' || reservationId.startsWith(FAIL_OPEN_PREFIX)) return;
    // Whatever the settlement holds, the reservation ends: a bad settlement is charged the
    // reserved estimate (and reported), never left open to hold budget and slots.
    let invalid: KeyStoreError | undefined;
    let args: string[];
    try {
      if (typeof settlement !== 'object' || settlement === null) {
        throw new KeyStoreError('invalid_field', undefined, 'settlement must be an object');
      }
      const costUsd = checkAmount(settlement.costUsd, 'costUsd');
      const promptTokens = checkAmount(settlement.promptTokens, 'promptTokens');
      const completionTokens = checkAmount(settlement.completionTokens, 'completionTokens');
      const now = checkInstant(settlement.nowMs, 'nowMs');
      if (settlement.model !== undefined && typeof settlement.model !== 'string') {
        throw new KeyStoreError('invalid_field', 'model', 'model must be a string or undefined');
      }
      const hasModel = settlement.model !== undefined;
      args = [
        '0',
        String(costUsd),
        String(promptTokens),
        String(completionTokens),
        String(now),
        hasModel ? '1' : '0',
        hasModel ? settlement.model! : '',
      ];
    } catch (err) {
      if (!(err instanceof KeyStoreError)) throw err;
      invalid = err;
      args = ['1', '0', '0', '0', '0', '0', ''];
    }
    await this.seeded();
    const settled = await this.exec(SCRIPTS.settle, [
      this.keyPrefix,
      reservationId,
      ...args,
      String(this.retentionDays),
      String(MAX_MODELS_PER_RECORD),
      OTHER_MODELS,
      String(MS_PER_UTC_DAY),
    ]);
    if (settled === 1 && invalid !== undefined) throw invalid;
  }

  async spend(query: SpendQuery): Promise<SpendRow[]> {
    if (typeof query !== 'object' || query === null) {
      throw new KeyStoreError('invalid_field', undefined, 'spend query must be an object');
    }
    const groupBy = query.groupBy;
    if (groupBy !== 'key' && groupBy !== 'team' && groupBy !== 'user' && groupBy !== 'model') {
      throw new KeyStoreError('invalid_field', 'groupBy', 'groupBy must be key, team, user or model');
    }
    const from =
      query.fromMs === undefined ? '-inf' : String(utcDayNumber(checkInstant(query.fromMs, 'fromMs')));
    const to = query.toMs === undefined ? '+inf' : String(utcDayNumber(checkInstant(query.toMs, 'toMs')));
    await this.seeded();
    const flat = (await this.exec(SCRIPTS.spend, [this.keyPrefix, from, to])) as string[];
    const column = groupBy === 'key' ? 0 : groupBy === 'team' ? 1 : groupBy === 'user' ? 2 : 3;
    const rows = new Map<string | null, SpendRow>();
    for (let i = 0; i < flat.length; i += 2) {
      const identity = JSON.parse(flat[i]!) as (string | null)[];
      const [spendUsd, requests, promptTokens, completionTokens] = flat[i + 1]!.split(' ').map(Number);
      const group = identity[column] ?? null;
      let row = rows.get(group);
      if (row === undefined) {
        row = { group, spendUsd: 0, requests: 0, promptTokens: 0, completionTokens: 0 };
        rows.set(group, row);
      }
      row.spendUsd += spendUsd!;
      row.requests += requests!;
      row.promptTokens += promptTokens!;
      row.completionTokens += completionTokens!;
    }
    // Highest spend first; ties by group, `null` last, so the order is stable.
    return [...rows.values()].sort(
      (a, b) =>
        b.spendUsd - a.spendUsd ||
        (a.group === b.group ? 0 : a.group === null ? 1 : b.group === null ? -1 : a.group < b.group ? -1 : 1),
    );
  }

  async authFailureState(address: string, nowMs: number): Promise<AuthFailureState> {
    return this.authFailures(address, nowMs, 'read');
  }

  async recordAuthFailure(address: string, nowMs: number): Promise<AuthFailureState> {
    return this.authFailures(address, nowMs, 'record');
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

  private async authFailures(
    address: string,
    nowMs: number,
    mode: 'read' | 'record',
  ): Promise<AuthFailureState> {
    checkAddress(address);
    const now = checkInstant(nowMs, 'nowMs');
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

  private async readAll(kind: Kind): Promise<(ApiKey | Team | User)[]> {
    await this.seeded();
    const records = (await this.exec(SCRIPTS.read, [this.keyPrefix, kind, 'all'])) as RecordReply[];
    return records.map(decodeRecord);
  }

  private remember(cacheKey: string, record: ApiKey | Team | User): void {
    const remembered = this.remembered;
    remembered.delete(cacheKey);
    if (remembered.size >= MAX_REMEMBERED_RECORDS) remembered.delete(remembered.keys().next().value!);
    remembered.set(cacheKey, structuredClone(record));
  }

  private async createKeyIn(input: NewApiKey, mode: 'create' | 'seed'): Promise<ApiKey | undefined> {
    const values = readFields(input, KEY_CREATE_FIELDS, 'create');
    required(values, 'name');
    required(values, 'hash');
    required(values, 'prefix');
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

  private async createRecordIn(
    kind: 'team' | 'user',
    input: NewTeam | NewUser,
    mode: 'create' | 'seed',
  ): Promise<Team | User | undefined> {
    const values = readFields(input, kind === 'team' ? TEAM_CREATE_FIELDS : USER_CREATE_FIELDS, 'create');
    required(values, 'name');
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

  private async update(
    kind: Kind,
    id: string,
    patch: KeyPatch | TeamPatch | UserPatch,
    fields: Fields,
  ): Promise<ApiKey | Team | User | undefined> {
    if (typeof id !== 'string') return undefined;
    await this.seeded();
    let values: Record<string, unknown>;
    try {
      values = readFields(patch, fields, 'patch');
    } catch (err) {
      // As in memory: a patch of a record that does not exist answers undefined, valid or not.
      const exists = await this.exec(SCRIPTS.read, [this.keyPrefix, kind, 'id', id]);
      if ((exists as unknown[]).length === 0) return undefined;
      throw err;
    }
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

  private async remove(kind: 'team' | 'user', id: string): Promise<boolean> {
    if (typeof id !== 'string') return false;
    await this.seeded();
    const reply = (await this.exec(SCRIPTS.remove, [this.keyPrefix, kind, id])) as [string, string?];
    if (reply[0] === 'in_use') throw inUse(kind, reply[1]!);
    return reply[0] === 'ok';
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
        await inEntry(`teams[${index}]`, () => this.createRecordIn('team', team, 'seed'));
      }
      for (const [index, user] of seed.users.entries()) {
        await inEntry(`users[${index}]`, () => this.createRecordIn('user', user, 'seed'));
      }
      for (const [index, key] of seed.keys.entries()) {
        await inEntry(`keys[${index}]`, () => this.createKeyIn(key, 'seed'));
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
  const check = (list: object[], name: string, fields: Fields, needs: string[]): void => {
    list.forEach((input, index) => {
      try {
        const values = readFields(input, fields, 'create');
        for (const field of needs) required(values, field);
        if (name !== 'keys' && values.id === undefined) {
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
  check(resolved.teams, 'teams', TEAM_CREATE_FIELDS, ['name']);
  check(resolved.users, 'users', USER_CREATE_FIELDS, ['name']);
  check(resolved.keys, 'keys', KEY_CREATE_FIELDS, ['name', 'hash', 'prefix']);
  return resolved;
}

function notFoundKey(): KeyStoreError {
  return new KeyStoreError('not_found', 'keyId', 'no key has this keyId');
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
