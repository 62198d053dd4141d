// The embedded KeyStore: keys, teams, users and their accounting in this process's memory.
// Every method's body runs synchronously, so each admission and settlement is atomic.
import { OptionReader } from '../options.js';
import { randomBytes } from 'node:crypto';
import { KeyStoreError } from './errors.js';
import { gcraAdjust, gcraConsume, gcraState } from './gcra.js';
import { resolveSeed, withEntry, type KeyStoreSeed } from './seed.js';
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
import { msUntilNextUtcMidnight, utcDayNumber } from './utc.js';
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
  patched,
  readFields,
  required,
  resolveAccountingOptions,
  type AuthFailureOptions,
} from './validate.js';

export type { AuthFailureOptions } from './validate.js';

/** Options of {@link MemoryKeyStore}. */
export interface MemoryKeyStoreOptions {
  /** Clock for `createdAt`, ms since the epoch. Admission and settlement take `nowMs` instead. Default `Date.now`. */
  clock?: () => number;
  /**
   * USD by which spend plus open reservations may pass a budget. Default 0: a request is
   * admitted only if spend + open reservations + its estimate <= budget, for key, team and user.
   */
  budgetToleranceUsd?: number;
  /** The failed-auth limiter. Defaults: 5 failures per 15 minutes, 10 000 addresses. */
  authFailures?: AuthFailureOptions;
  /** Whole UTC days of spend buckets kept for `spend()`; older ones are pruned on write. Default 400. */
  spendRetentionDays?: number;
  /** Teams, users and keys created at construction, synchronously (a bad entry throws from the constructor). */
  seed?: KeyStoreSeed;
  /** Pepper for hashing the seed's plaintext keys (HMAC-SHA-256); must match `keyAuth`'s. Default: none (SHA-256). */
  pepper?: string;
}

/** Accounting shared by keys, teams and users. */
interface Account {
  spendUsd: number;
  spendByModel: Map<string, number>;
  /** Sum of the estimates of open reservations. */
  reservedUsd: number;
  openReservations: number;
  rpmTatMs: number;
  tpmTatMs: number;
}

interface KeyEntry {
  kind: 'key';
  fields: Omit<ApiKey, 'spendUsd' | 'spendByModel'>;
  account: Account;
  inFlight: number;
  /** The UTC day the daily counters belong to. */
  usageDay: number;
  requestsToday: number;
  tokensToday: number;
}
interface TeamEntry {
  kind: 'team';
  fields: Omit<Team, 'spendUsd' | 'spendByModel'>;
  account: Account;
}
interface UserEntry {
  kind: 'user';
  fields: Omit<User, 'spendUsd' | 'spendByModel'>;
  account: Account;
}
type Entry = KeyEntry | TeamEntry | UserEntry;

interface Reservation {
  keyId: string;
  teamId: string | undefined;
  userId: string | undefined;
  model: string | undefined;
  costUsd: number;
  tokens: number;
  day: number;
  admittedAtMs: number;
}

/** The checked figures a settlement applies. */
interface AppliedSettlement {
  costUsd: number;
  promptTokens: number;
  completionTokens: number;
  now: number;
  model: string | undefined;
}

interface SpendBucket {
  keyId: string;
  teamId: string | null;
  userId: string | null;
  model: string | null;
  spendUsd: number;
  requests: number;
  promptTokens: number;
  completionTokens: number;
}

interface AuthFailures {
  startMs: number;
  count: number;
}

type Refusal = Extract<Admission, { ok: false }>;

/**
 * The embedded {@link KeyStore}: everything in this process's memory, for a single instance
 * (use a shared store when several instances serve the same keys).
 *
 * - Copies in and out: no object a caller passes or receives is ever kept or shared.
 * - `admit` checks, in this order, the budgets of key, team and user (spend + open reservations
 *   + estimate against budget + `budgetToleranceUsd`), the key's daily request and token quotas
 *   (UTC days), the rpm and tpm windows of key, team and user (GCRA, full-minute burst), and the
 *   key's `maxParallel`; it reserves only when all pass. Expiry, revocation and model allow-lists
 *   are the middleware's to check. `retryAfterMs` is the GCRA wait (the longest of the windows
 *   that refused) for rpm/tpm, the time to the next 00:00 UTC for daily quotas, 1000 for a
 *   parallel slot, and `undefined` when waiting cannot help (a budget; an estimate above a whole
 *   tpm limit or daily token quota).
 * - `rateLimit` is the tightest rpm or tpm window (lowest remaining share), or the window that
 *   refused.
 * - Spend on a request without a model counts in `spendUsd` only; a record keeps at most 256
 *   models in `spendByModel`, further ones under `(other)`.
 * - A team or user that keys or users reference cannot be deleted (`in_use`).
 * - `close()` resolves at once: the store holds no timers or connections, and keeps working.
 *
 * @throws TypeError at construction for a bad option; KeyStoreError for a seed entry it refuses.
 * @example
 * const store = new MemoryKeyStore({ seed: { keys: [{ id: 'ci', name: 'CI', key: process.env.CI_KEY!, rpm: 60 }] } });
 * app.use('/v1', bodyLimit(), keyAuth({ store }), streamRelay({ upstream }));
 */
export class MemoryKeyStore implements KeyStore {
  private readonly clock: () => number;
  private readonly toleranceUsd: number;
  private readonly authMax: number;
  private readonly authWindowMs: number;
  private readonly authMaxTracked: number;
  private readonly retentionDays: number;

  private readonly keys = new Map<string, KeyEntry>();
  private readonly keyIdByHash = new Map<string, string>();
  private readonly teams = new Map<string, TeamEntry>();
  private readonly users = new Map<string, UserEntry>();
  private readonly reservations = new Map<string, Reservation>();
  /** UTC day → bucket identity → bucket. */
  private readonly buckets = new Map<number, Map<string, SpendBucket>>();
  private latestSpendDay = Number.MIN_SAFE_INTEGER;
  /** Insertion order is recency: the first entry is the least recently touched. */
  private readonly authFailures = new Map<string, AuthFailures>();
  private readonly reservationPrefix = `res_${randomBytes(6).toString('base64url')}_`;
  private reservationCount = 0;

  constructor(options: MemoryKeyStoreOptions = {}) {
    const read = new OptionReader('MemoryKeyStore');
    read.options(options);
    this.clock = read.function('clock', options.clock, Date.now);
    const resolved = resolveAccountingOptions('MemoryKeyStore', options);
    this.toleranceUsd = resolved.toleranceUsd;
    this.authMax = resolved.authMax;
    this.authWindowMs = resolved.authWindowMs;
    this.authMaxTracked = resolved.authMaxTracked;
    this.retentionDays = resolved.retentionDays;
    if (options.seed !== undefined) this.applySeed(options.seed, resolved.pepper);
  }

  async createKey(input: NewApiKey): Promise<ApiKey> {
    return this.out(this.createKeyNow(input));
  }

  async getKey(id: string): Promise<ApiKey | undefined> {
    const entry = this.keys.get(id);
    return entry === undefined ? undefined : this.out(entry);
  }

  async findKeyByHash(hash: string): Promise<ApiKey | undefined> {
    if (typeof hash !== 'string') return undefined;
    const id = this.keyIdByHash.get(hash.toLowerCase());
    return id === undefined ? undefined : this.out(this.keys.get(id)!);
  }

  async listKeys(): Promise<ApiKey[]> {
    return Array.from(this.keys.values(), (entry) => this.out(entry));
  }

  async updateKey(id: string, patch: KeyPatch): Promise<ApiKey | undefined> {
    const entry = this.keys.get(id);
    if (entry === undefined) return undefined;
    entry.fields = patched(entry.fields, readFields(patch, KEY_PATCH_FIELDS, 'patch'));
    return this.out(entry);
  }

  async revokeKey(id: string): Promise<boolean> {
    const entry = this.keys.get(id);
    if (entry === undefined) return false;
    entry.fields = { ...entry.fields, revoked: true };
    return true;
  }

  async createTeam(input: NewTeam): Promise<Team> {
    return this.out(this.createTeamNow(input));
  }

  async getTeam(id: string): Promise<Team | undefined> {
    const entry = this.teams.get(id);
    return entry === undefined ? undefined : this.out(entry);
  }

  async listTeams(): Promise<Team[]> {
    return Array.from(this.teams.values(), (entry) => this.out(entry));
  }

  async updateTeam(id: string, patch: TeamPatch): Promise<Team | undefined> {
    const entry = this.teams.get(id);
    if (entry === undefined) return undefined;
    entry.fields = patched(entry.fields, readFields(patch, TEAM_PATCH_FIELDS, 'patch'));
    return this.out(entry);
  }

  async deleteTeam(id: string): Promise<boolean> {
    if (!this.teams.has(id)) return false;
    for (const key of this.keys.values()) {
      if (key.fields.teamId === id) throw inUse('team', 'keys');
    }
    for (const user of this.users.values()) {
      if (user.fields.teamId === id) throw inUse('team', 'users');
    }
    return this.teams.delete(id);
  }

  async createUser(input: NewUser): Promise<User> {
    return this.out(this.createUserNow(input));
  }

  async getUser(id: string): Promise<User | undefined> {
    const entry = this.users.get(id);
    return entry === undefined ? undefined : this.out(entry);
  }

  async listUsers(): Promise<User[]> {
    return Array.from(this.users.values(), (entry) => this.out(entry));
  }

  async updateUser(id: string, patch: UserPatch): Promise<User | undefined> {
    const entry = this.users.get(id);
    if (entry === undefined) return undefined;
    const values = readFields(patch, USER_PATCH_FIELDS, 'patch');
    if (typeof values.teamId === 'string') this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    entry.fields = patched(entry.fields, values);
    return this.out(entry);
  }

  async deleteUser(id: string): Promise<boolean> {
    if (!this.users.has(id)) return false;
    for (const key of this.keys.values()) {
      if (key.fields.userId === id) throw inUse('user', 'keys');
    }
    return this.users.delete(id);
  }

  async admit(request: AdmissionRequest): Promise<Admission> {
    if (typeof request !== 'object' || request === null) {
      throw new KeyStoreError('invalid_field', undefined, 'admission request must be an object');
    }
    const cost = checkAmount(request.estimatedCostUsd, 'estimatedCostUsd');
    const tokens = checkAmount(request.estimatedTokens, 'estimatedTokens');
    const now = checkInstant(request.nowMs, 'nowMs');
    const key = this.keys.get(request.keyId);
    if (key === undefined) throw new KeyStoreError('not_found', 'keyId', 'no key has this keyId');
    const team = key.fields.teamId === undefined ? undefined : this.teams.get(key.fields.teamId);
    const user = key.fields.userId === undefined ? undefined : this.users.get(key.fields.userId);
    const subjects = [key, team, user] as const;

    for (const subject of subjects) {
      if (subject !== undefined && this.overBudget(subject, cost)) {
        return refusal('budget', subject.kind, undefined, tightest(subjects, now));
      }
    }

    const day = utcDayNumber(now);
    const fresh = day > key.usageDay;
    const { dailyRequests, dailyTokens, maxParallel } = key.fields;
    if (dailyRequests !== undefined && (fresh ? 0 : key.requestsToday) + 1 > dailyRequests) {
      return refusal('daily_requests', 'key', msUntilNextUtcMidnight(now), tightest(subjects, now));
    }
    if (dailyTokens !== undefined && (fresh ? 0 : key.tokensToday) + tokens > dailyTokens) {
      const retryAfterMs = tokens > dailyTokens ? undefined : msUntilNextUtcMidnight(now);
      return refusal('daily_tokens', 'key', retryAfterMs, tightest(subjects, now));
    }

    // Every window is evaluated, so a refusal can name the longest wait; nothing is committed yet.
    const nextRpm = [0, 0, 0];
    const nextTpm = [0, 0, 0];
    let refused: Refusal | undefined;
    for (let i = 0; i < 3; i++) {
      const subject = subjects[i];
      if (subject === undefined) continue;
      const { rpm, tpm } = subject.fields;
      const { rpmTatMs, tpmTatMs } = subject.account;
      if (rpm !== undefined) {
        const decision = gcraConsume(rpmTatMs, 1, now, rpm);
        if (decision.allowed) nextRpm[i] = decision.tatMs;
        else refused = withWait(refused, 'rpm', subject.kind, decision.retryAfterMs, rpmTatMs, now, rpm);
      }
      if (tpm !== undefined) {
        const decision = gcraConsume(tpmTatMs, tokens, now, tpm);
        if (decision.allowed) nextTpm[i] = decision.tatMs;
        else refused = withWait(refused, 'tpm', subject.kind, decision.retryAfterMs, tpmTatMs, now, tpm);
      }
    }
    if (refused !== undefined) return refused;

    if (maxParallel !== undefined && key.inFlight >= maxParallel) {
      return refusal('parallel', 'key', PARALLEL_RETRY_AFTER_MS, tightest(subjects, now));
    }

    for (let i = 0; i < 3; i++) {
      const subject = subjects[i];
      if (subject === undefined) continue;
      const account = subject.account;
      if (subject.fields.rpm !== undefined) account.rpmTatMs = nextRpm[i]!;
      if (subject.fields.tpm !== undefined) account.tpmTatMs = nextTpm[i]!;
      account.reservedUsd += cost;
      account.openReservations += 1;
    }
    if (fresh) {
      key.usageDay = day;
      key.requestsToday = 0;
      key.tokensToday = 0;
    }
    key.requestsToday += 1;
    key.tokensToday += tokens;
    key.inFlight += 1;
    const reservationId = this.reservationPrefix + (++this.reservationCount).toString(36);
    this.reservations.set(reservationId, {
      keyId: key.fields.id,
      teamId: team?.fields.id,
      userId: user?.fields.id,
      model: typeof request.model === 'string' ? request.model : undefined,
      costUsd: cost,
      tokens,
      day,
      admittedAtMs: now,
    });
    return { ok: true, reservationId, rateLimit: tightest(subjects, now) };
  }

  async settle(reservationId: string, settlement: Settlement): Promise<void> {
    const reservation = this.reservations.get(reservationId);
    if (reservation === undefined) return;
    // Whatever the settlement holds, the reservation ends here: a bad settlement is charged the
    // reserved estimate (and reported), never left open to hold budget and slots forever.
    this.reservations.delete(reservationId);
    let invalid: KeyStoreError | undefined;
    let costUsd = reservation.costUsd;
    let promptTokens = reservation.tokens;
    let completionTokens = 0;
    let now = reservation.admittedAtMs;
    let model: string | undefined = reservation.model;
    try {
      if (typeof settlement !== 'object' || settlement === null) {
        throw new KeyStoreError('invalid_field', undefined, 'settlement must be an object');
      }
      const checkedCost = checkAmount(settlement.costUsd, 'costUsd');
      const checkedPrompt = checkAmount(settlement.promptTokens, 'promptTokens');
      const checkedCompletion = checkAmount(settlement.completionTokens, 'completionTokens');
      const checkedNow = checkInstant(settlement.nowMs, 'nowMs');
      if (settlement.model !== undefined && typeof settlement.model !== 'string') {
        throw new KeyStoreError('invalid_field', 'model', 'model must be a string or undefined');
      }
      costUsd = checkedCost;
      promptTokens = checkedPrompt;
      completionTokens = checkedCompletion;
      now = checkedNow;
      model = settlement.model;
    } catch (err) {
      if (!(err instanceof KeyStoreError)) throw err;
      invalid = err;
    }
    this.applySettlement(reservation, { costUsd, promptTokens, completionTokens, now, model });
    if (invalid !== undefined) throw invalid;
  }

  private applySettlement(
    reservation: Reservation,
    { costUsd, promptTokens, completionTokens, now, model }: AppliedSettlement,
  ): void {
    const tokenDelta = promptTokens + completionTokens - reservation.tokens;
    const key = this.keys.get(reservation.keyId)!;
    const modelName = settleAccount(key, reservation.costUsd, costUsd, model, tokenDelta, now);
    key.inFlight = key.inFlight > 0 ? key.inFlight - 1 : 0;
    if (key.usageDay === reservation.day) key.tokensToday = Math.max(0, key.tokensToday + tokenDelta);
    const team = reservation.teamId === undefined ? undefined : this.teams.get(reservation.teamId);
    if (team !== undefined) settleAccount(team, reservation.costUsd, costUsd, model, tokenDelta, now);
    const user = reservation.userId === undefined ? undefined : this.users.get(reservation.userId);
    if (user !== undefined) settleAccount(user, reservation.costUsd, costUsd, model, tokenDelta, now);
    this.addToBucket(reservation, modelName, costUsd, promptTokens, completionTokens, now);
  }

  async spend(query: SpendQuery): Promise<SpendRow[]> {
    if (typeof query !== 'object' || query === null) {
      throw new KeyStoreError('invalid_field', undefined, 'spend query must be an object');
    }
    const groupBy = query.groupBy;
    if (groupBy !== 'key' && groupBy !== 'team' && groupBy !== 'user' && groupBy !== 'model') {
      throw new KeyStoreError('invalid_field', 'groupBy', 'groupBy must be key, team, user or model');
    }
    const fromDay =
      query.fromMs === undefined ? -Infinity : utcDayNumber(checkInstant(query.fromMs, 'fromMs'));
    const toDay = query.toMs === undefined ? Infinity : utcDayNumber(checkInstant(query.toMs, 'toMs'));
    const rows = new Map<string | null, SpendRow>();
    for (const [day, buckets] of this.buckets) {
      if (day < fromDay || day > toDay) continue;
      for (const bucket of buckets.values()) {
        const group =
          groupBy === 'key'
            ? bucket.keyId
            : groupBy === 'team'
              ? bucket.teamId
              : groupBy === 'user'
                ? bucket.userId
                : bucket.model;
        let row = rows.get(group);
        if (row === undefined) {
          row = { group, spendUsd: 0, requests: 0, promptTokens: 0, completionTokens: 0 };
          rows.set(group, row);
        }
        row.spendUsd += bucket.spendUsd;
        row.requests += bucket.requests;
        row.promptTokens += bucket.promptTokens;
        row.completionTokens += bucket.completionTokens;
      }
    }
    // Highest spend first; ties by group, `null` last, so the order is stable.
    return [...rows.values()].sort(
      (a, b) =>
        b.spendUsd - a.spendUsd ||
        (a.group === b.group ? 0 : a.group === null ? 1 : b.group === null ? -1 : a.group < b.group ? -1 : 1),
    );
  }

  async authFailureState(address: string, nowMs: number): Promise<AuthFailureState> {
    checkAddress(address);
    const now = checkInstant(nowMs, 'nowMs');
    const failures = this.authFailures.get(address);
    if (failures === undefined) return { blocked: false, retryAfterMs: 0 };
    this.authFailures.delete(address);
    if (now >= failures.startMs + this.authWindowMs) return { blocked: false, retryAfterMs: 0 };
    this.authFailures.set(address, failures);
    return this.authState(failures, now);
  }

  async recordAuthFailure(address: string, nowMs: number): Promise<AuthFailureState> {
    checkAddress(address);
    const now = checkInstant(nowMs, 'nowMs');
    let failures = this.authFailures.get(address);
    if (failures !== undefined) this.authFailures.delete(address);
    if (failures === undefined || now >= failures.startMs + this.authWindowMs) {
      failures = { startMs: now, count: 0 };
      if (this.authFailures.size >= this.authMaxTracked) {
        this.authFailures.delete(this.authFailures.keys().next().value!);
      }
    }
    if (failures.count < this.authMax) failures.count += 1;
    this.authFailures.set(address, failures);
    return this.authState(failures, now);
  }

  /** Resolves at once: the memory store holds no timers or connections. Idempotent. */
  async close(): Promise<void> {}

  private applySeed(seed: KeyStoreSeed, pepper: string | undefined): void {
    const resolved = resolveSeed(seed, { pepper });
    const apply = <T>(list: T[], name: string, create: (input: T) => unknown): void => {
      list.forEach((input, index) => {
        try {
          create(input);
        } catch (err) {
          throw withEntry(err, `${name}[${index}]`);
        }
      });
    };
    apply(resolved.teams, 'teams', (team) => this.createTeamNow(team));
    apply(resolved.users, 'users', (user) => this.createUserNow(user));
    apply(resolved.keys, 'keys', (key) => this.createKeyNow(key));
  }

  private createKeyNow(input: NewApiKey): KeyEntry {
    const values = readFields(input, KEY_CREATE_FIELDS, 'create');
    required(values, 'name');
    required(values, 'hash');
    required(values, 'prefix');
    const hash = values.hash as string;
    if (typeof values.teamId === 'string') this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    if (typeof values.userId === 'string') this.mustExist(this.users, values.userId, 'userId', 'user');
    if (this.keyIdByHash.has(hash)) {
      throw new KeyStoreError('duplicate_hash', 'hash', 'a key with this hash already exists');
    }
    const id = this.newId(this.keys, values.id, 'key');
    const fields = { ...values, id, revoked: false, createdAt: this.clock() } as KeyEntry['fields'];
    const entry: KeyEntry = {
      kind: 'key',
      fields,
      account: newAccount(),
      inFlight: 0,
      usageDay: Number.MIN_SAFE_INTEGER,
      requestsToday: 0,
      tokensToday: 0,
    };
    this.keys.set(id, entry);
    this.keyIdByHash.set(hash, id);
    return entry;
  }

  private createTeamNow(input: NewTeam): TeamEntry {
    const values = readFields(input, TEAM_CREATE_FIELDS, 'create');
    required(values, 'name');
    const id = this.newId(this.teams, values.id, 'team');
    const fields = { ...values, id, createdAt: this.clock() } as TeamEntry['fields'];
    const entry: TeamEntry = { kind: 'team', fields, account: newAccount() };
    this.teams.set(id, entry);
    return entry;
  }

  private createUserNow(input: NewUser): UserEntry {
    const values = readFields(input, USER_CREATE_FIELDS, 'create');
    required(values, 'name');
    if (typeof values.teamId === 'string') this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    const id = this.newId(this.users, values.id, 'user');
    const fields = { ...values, id, createdAt: this.clock() } as UserEntry['fields'];
    const entry: UserEntry = { kind: 'user', fields, account: newAccount() };
    this.users.set(id, entry);
    return entry;
  }

  /** The given id when it is free, or a new random one (`key_…`, `team_…`, `user_…`). */
  private newId(records: Map<string, unknown>, given: unknown, kind: string): string {
    if (typeof given === 'string') {
      if (records.has(given))
        throw new KeyStoreError('duplicate_id', 'id', `a ${kind} with this id already exists`);
      return given;
    }
    let id: string;
    do id = `${kind}_${randomBytes(12).toString('base64url')}`;
    while (records.has(id));
    return id;
  }

  private mustExist(records: Map<string, unknown>, id: string, field: string, kind: string): void {
    if (!records.has(id))
      throw new KeyStoreError('invalid_field', field, `${field} names no existing ${kind}`);
  }

  private overBudget(subject: Entry, costUsd: number): boolean {
    const budget = subject.fields.budgetUsd;
    if (budget === undefined) return false;
    const account = subject.account;
    return account.spendUsd + account.reservedUsd + costUsd > budget + this.toleranceUsd + BUDGET_EPSILON_USD;
  }

  private addToBucket(
    reservation: Reservation,
    model: string | undefined,
    costUsd: number,
    promptTokens: number,
    completionTokens: number,
    nowMs: number,
  ): void {
    const day = utcDayNumber(nowMs);
    if (day > this.latestSpendDay) {
      this.latestSpendDay = day;
      for (const old of this.buckets.keys()) {
        if (old <= day - this.retentionDays) this.buckets.delete(old);
      }
    }
    if (day <= this.latestSpendDay - this.retentionDays) return;
    let buckets = this.buckets.get(day);
    if (buckets === undefined) {
      buckets = new Map();
      this.buckets.set(day, buckets);
    }
    const teamId = reservation.teamId ?? null;
    const userId = reservation.userId ?? null;
    const modelGroup = model ?? null;
    const identity = JSON.stringify([reservation.keyId, teamId, userId, modelGroup]);
    let bucket = buckets.get(identity);
    if (bucket === undefined) {
      bucket = {
        keyId: reservation.keyId,
        teamId,
        userId,
        model: modelGroup,
        spendUsd: 0,
        requests: 0,
        promptTokens: 0,
        completionTokens: 0,
      };
      buckets.set(identity, bucket);
    }
    bucket.spendUsd += costUsd;
    bucket.requests += 1;
    bucket.promptTokens += promptTokens;
    bucket.completionTokens += completionTokens;
  }

  private authState(failures: AuthFailures, now: number): AuthFailureState {
    return failures.count >= this.authMax
      ? { blocked: true, retryAfterMs: failures.startMs + this.authWindowMs - now }
      : { blocked: false, retryAfterMs: 0 };
  }

  /** A fresh copy of a record: nothing in it is shared with the store. */
  private out(entry: KeyEntry): ApiKey;
  private out(entry: TeamEntry): Team;
  private out(entry: UserEntry): User;
  private out(entry: Entry): ApiKey | Team | User {
    const copy = {
      ...entry.fields,
      spendUsd: entry.account.spendUsd,
      spendByModel: Object.fromEntries(entry.account.spendByModel),
    };
    if (copy.models !== undefined) copy.models = copy.models.slice();
    if (copy.metadata !== undefined) copy.metadata = structuredClone(copy.metadata);
    return copy;
  }
}

function newAccount(): Account {
  return {
    spendUsd: 0,
    spendByModel: new Map(),
    reservedUsd: 0,
    openReservations: 0,
    rpmTatMs: 0,
    tpmTatMs: 0,
  };
}

/**
 * Replaces the estimate reserved on `subject` by the real cost and corrects its tpm window.
 * Returns the name the spend was kept under: the model, `(other)` past the bound, or undefined.
 */
function settleAccount(
  subject: Entry,
  reservedUsd: number,
  costUsd: number,
  model: string | undefined,
  tokenDelta: number,
  now: number,
): string | undefined {
  const account = subject.account;
  account.openReservations = account.openReservations > 0 ? account.openReservations - 1 : 0;
  // With nothing open the sum is exactly zero, so float drift cannot pile up.
  account.reservedUsd = account.openReservations > 0 ? Math.max(0, account.reservedUsd - reservedUsd) : 0;
  account.spendUsd += costUsd;
  const tpm = subject.fields.tpm;
  if (tpm !== undefined && tokenDelta !== 0)
    account.tpmTatMs = gcraAdjust(account.tpmTatMs, tokenDelta, now, tpm);
  if (model === undefined) return undefined;
  const byModel = account.spendByModel;
  const slot = byModel.has(model) || byModel.size < MAX_MODELS_PER_RECORD ? model : OTHER_MODELS;
  byModel.set(slot, (byModel.get(slot) ?? 0) + costUsd);
  return slot;
}

function refusal(
  reason: RefusalReason,
  subject: Entry['kind'],
  retryAfterMs: number | undefined,
  rateLimit: RateLimitState | undefined,
): Refusal {
  return { ok: false, reason, subject, retryAfterMs, rateLimit };
}

/**
 * The first refusing window names reason, subject and rate state; the wait is the longest of
 * all refusing windows (`undefined` when one of them can never pass).
 */
function withWait(
  refused: Refusal | undefined,
  reason: 'rpm' | 'tpm',
  subject: Entry['kind'],
  retryAfterMs: number | undefined,
  tatMs: number,
  now: number,
  limit: number,
): Refusal {
  if (refused === undefined) return refusal(reason, subject, retryAfterMs, windowState(tatMs, now, limit));
  if (
    refused.retryAfterMs !== undefined &&
    (retryAfterMs === undefined || retryAfterMs > refused.retryAfterMs)
  ) {
    refused.retryAfterMs = retryAfterMs;
  }
  return refused;
}

function windowState(tatMs: number, now: number, limit: number): RateLimitState {
  const state = gcraState(tatMs, now, limit);
  return { limit, remaining: state.remaining, resetMs: state.resetMs };
}

/** The rpm or tpm window with the lowest share remaining, of all that apply. */
function tightest(subjects: readonly (Entry | undefined)[], now: number): RateLimitState | undefined {
  let best: RateLimitState | undefined;
  let bestShare = Infinity;
  for (const subject of subjects) {
    if (subject === undefined) continue;
    const { rpm, tpm } = subject.fields;
    if (rpm !== undefined) {
      const state = windowState(subject.account.rpmTatMs, now, rpm);
      if (state.remaining / rpm < bestShare) [best, bestShare] = [state, state.remaining / rpm];
    }
    if (tpm !== undefined) {
      const state = windowState(subject.account.tpmTatMs, now, tpm);
      if (state.remaining / tpm < bestShare) [best, bestShare] = [state, state.remaining / tpm];
    }
  }
  return best;
}
