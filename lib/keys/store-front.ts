// The rules every KeyStore shares, written once: argument checks, record validation, settlement
// validation, the spend roll-up. A backend (memory, Redis) only stores and applies what the front
// has already checked, each operation atomically.
import { TOKEN_CLASSES } from '../usage.js';
import { KeyStoreError } from './errors.js';
import type {
  Admission,
  AdmissionRequest,
  ApiKey,
  AuthFailureState,
  KeyLookup,
  KeyPatch,
  KeyStore,
  NewApiKey,
  NewTeam,
  NewUser,
  Settlement,
  SpendQuery,
  SpendRow,
  Team,
  TeamPatch,
  TokenClasses,
  User,
  UserPatch,
} from './types.js';
import { utcDayNumber } from './utc.js';
import {
  KEY_CREATE_FIELDS,
  KEY_PATCH_FIELDS,
  TEAM_CREATE_FIELDS,
  TEAM_PATCH_FIELDS,
  USER_CREATE_FIELDS,
  USER_PATCH_FIELDS,
  checkAddress,
  checkAmount,
  checkInstant,
  readFields,
  required,
  type Fields,
} from './validate.js';

/** The kinds of record a store keeps. */
export type RecordKind = 'key' | 'team' | 'user';

/** An admission whose figures the front has checked. */
export interface CheckedAdmission {
  /** The caller's reservation id, if it gave one. */
  reservationId: string | undefined;
  keyId: string;
  model: string | undefined;
  costUsd: number;
  tokens: number;
  nowMs: number;
}

/** A settlement whose figures the front has checked; every token class is present. */
export interface CheckedSettlement extends TokenClasses {
  model: string | undefined;
  costUsd: number;
  promptTokens: number;
  completionTokens: number;
  nowMs: number;
}

/** The token counts a spend bucket sums, in the order backends store them. */
export const SPEND_COUNTS = ['requests', 'promptTokens', 'completionTokens', ...TOKEN_CLASSES] as const;

/** What a spend bucket sums per identity and UTC day. */
export type SpendCounts = { spendUsd: number } & { [K in (typeof SPEND_COUNTS)[number]]: number };

/** One spend bucket as a backend returns it: who, which model, and the sums. */
export interface SpendBucket extends SpendCounts {
  keyId: string;
  teamId: string | null;
  userId: string | null;
  model: string | null;
}

const HASH_PATTERN = /^[0-9a-f]{64}$/;
const RESERVATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const GROUP_COLUMNS = { key: 'keyId', team: 'teamId', user: 'userId', model: 'model' } as const;

/** The rule every store shares: an admission of a key that does not exist. */
export function unknownKey(): KeyStoreError {
  return new KeyStoreError('not_found', 'keyId', 'no key has this keyId');
}

/** A zeroed set of spend sums. */
export function emptyCounts(): SpendCounts {
  return {
    spendUsd: 0,
    requests: 0,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    audioPromptTokens: 0,
    audioCompletionTokens: 0,
  };
}

/** Adds one settled request to `counts`. */
export function addSettlement(counts: SpendCounts, settled: CheckedSettlement): void {
  counts.spendUsd += settled.costUsd;
  counts.requests += 1;
  counts.promptTokens += settled.promptTokens;
  counts.completionTokens += settled.completionTokens;
  counts.cachedTokens += settled.cachedTokens;
  counts.cacheWriteTokens += settled.cacheWriteTokens;
  counts.reasoningTokens += settled.reasoningTokens;
  counts.audioPromptTokens += settled.audioPromptTokens;
  counts.audioCompletionTokens += settled.audioCompletionTokens;
}

/**
 * A {@link KeyStore} whose shared rules are written here once: the memory and the Redis stores
 * extend it and implement only storage, so both refuse and accept exactly the same input.
 */
export abstract class KeyStoreFront implements KeyStore {
  async createKey(input: NewApiKey): Promise<ApiKey> {
    return this.insertKey(checkNewRecord('key', input));
  }

  async getKey(id: string): Promise<ApiKey | undefined> {
    return typeof id === 'string' ? ((await this.readRecord('key', id)) as ApiKey | undefined) : undefined;
  }

  async findKeyByHash(hash: string): Promise<ApiKey | undefined> {
    if (typeof hash !== 'string') return undefined;
    const lower = hash.toLowerCase();
    // Stored hashes are 64 hex digits: anything else is unknown without asking the backend.
    return HASH_PATTERN.test(lower) ? this.readKeyByHash(lower) : undefined;
  }

  async listKeys(): Promise<ApiKey[]> {
    return (await this.readAll('key')) as ApiKey[];
  }

  async updateKey(id: string, patch: KeyPatch): Promise<ApiKey | undefined> {
    return (await this.update('key', id, patch, KEY_PATCH_FIELDS)) as ApiKey | undefined;
  }

  async revokeKey(id: string): Promise<boolean> {
    return typeof id === 'string' ? this.revoke(id) : false;
  }

  async createTeam(input: NewTeam): Promise<Team> {
    return (await this.insertRecord('team', checkNewRecord('team', input))) as Team;
  }

  async getTeam(id: string): Promise<Team | undefined> {
    return typeof id === 'string' ? ((await this.readRecord('team', id)) as Team | undefined) : undefined;
  }

  async listTeams(): Promise<Team[]> {
    return (await this.readAll('team')) as Team[];
  }

  async updateTeam(id: string, patch: TeamPatch): Promise<Team | undefined> {
    return (await this.update('team', id, patch, TEAM_PATCH_FIELDS)) as Team | undefined;
  }

  async deleteTeam(id: string): Promise<boolean> {
    return typeof id === 'string' ? this.removeRecord('team', id) : false;
  }

  async createUser(input: NewUser): Promise<User> {
    return (await this.insertRecord('user', checkNewRecord('user', input))) as User;
  }

  async getUser(id: string): Promise<User | undefined> {
    return typeof id === 'string' ? ((await this.readRecord('user', id)) as User | undefined) : undefined;
  }

  async listUsers(): Promise<User[]> {
    return (await this.readAll('user')) as User[];
  }

  async updateUser(id: string, patch: UserPatch): Promise<User | undefined> {
    return (await this.update('user', id, patch, USER_PATCH_FIELDS)) as User | undefined;
  }

  async deleteUser(id: string): Promise<boolean> {
    return typeof id === 'string' ? this.removeRecord('user', id) : false;
  }

  async admit(request: AdmissionRequest): Promise<Admission> {
    if (typeof request !== 'object' || request === null) {
      throw new KeyStoreError('invalid_field', undefined, 'admission request must be an object');
    }
    const costUsd = checkAmount(request.estimatedCostUsd, 'estimatedCostUsd');
    const tokens = checkAmount(request.estimatedTokens, 'estimatedTokens');
    const nowMs = checkInstant(request.nowMs, 'nowMs');
    if (typeof request.keyId !== 'string') throw unknownKey();
    const model = typeof request.model === 'string' ? request.model : undefined;
    const reservationId = request.reservationId;
    if (
      reservationId !== undefined &&
      (typeof reservationId !== 'string' || !RESERVATION_ID.test(reservationId))
    ) {
      throw new KeyStoreError(
        'invalid_field',
        'reservationId',
        'reservationId must be 1-128 characters of A-Z, a-z, 0-9 and . _ : -',
      );
    }
    return this.admitChecked({ reservationId, keyId: request.keyId, model, costUsd, tokens, nowMs });
  }

  /**
   * Whatever the settlement holds, the reservation ends: a settlement that fails validation is
   * charged the reserved estimate (and then refused), never left open to hold budget and slots.
   */
  async settle(reservationId: string, settlement: Settlement): Promise<void> {
    if (typeof reservationId !== 'string') return;
    let checked: CheckedSettlement | undefined;
    let invalid: KeyStoreError | undefined;
    try {
      checked = checkSettlement(settlement);
    } catch (err) {
      if (!(err instanceof KeyStoreError)) throw err;
      invalid = err;
    }
    const settled = await this.settleChecked(reservationId, checked);
    if (settled && invalid !== undefined) throw invalid;
  }

  async spend(query: SpendQuery): Promise<SpendRow[]> {
    if (typeof query !== 'object' || query === null) {
      throw new KeyStoreError('invalid_field', undefined, 'spend query must be an object');
    }
    const groupBy = query.groupBy;
    if (!Object.hasOwn(GROUP_COLUMNS, groupBy)) {
      throw new KeyStoreError('invalid_field', 'groupBy', 'groupBy must be key, team, user or model');
    }
    const fromDay =
      query.fromMs === undefined ? -Infinity : utcDayNumber(checkInstant(query.fromMs, 'fromMs'));
    const toDay = query.toMs === undefined ? Infinity : utcDayNumber(checkInstant(query.toMs, 'toMs'));
    const column = GROUP_COLUMNS[groupBy];
    const rows = new Map<string | null, SpendRow>();
    for (const bucket of await this.spendBuckets(fromDay, toDay)) {
      const group = bucket[column];
      let row = rows.get(group);
      if (row === undefined) {
        row = { group, ...emptyCounts() };
        rows.set(group, row);
      }
      row.spendUsd += bucket.spendUsd;
      for (const count of SPEND_COUNTS) row[count] += bucket[count];
    }
    // Highest spend first; ties by group, `null` last, so the order is stable.
    return [...rows.values()].sort(
      (a, b) =>
        b.spendUsd - a.spendUsd ||
        (a.group === b.group ? 0 : a.group === null ? 1 : b.group === null ? -1 : a.group < b.group ? -1 : 1),
    );
  }

  async lookupKey(hash: string, address: string, nowMs: number): Promise<KeyLookup> {
    checkAddress(address);
    const now = checkInstant(nowMs, 'nowMs');
    const lower = typeof hash === 'string' ? hash.toLowerCase() : '';
    return this.lookup(HASH_PATTERN.test(lower) ? lower : undefined, address, now);
  }

  async authFailureState(address: string, nowMs: number): Promise<AuthFailureState> {
    checkAddress(address);
    return this.authFailures(address, checkInstant(nowMs, 'nowMs'), 'read');
  }

  async recordAuthFailure(address: string, nowMs: number): Promise<AuthFailureState> {
    checkAddress(address);
    return this.authFailures(address, checkInstant(nowMs, 'nowMs'), 'record');
  }

  abstract close(): Promise<void>;

  /** A patch of a record that does not exist answers undefined, valid or not. */
  private async update(
    kind: RecordKind,
    id: string,
    patch: unknown,
    fields: Fields,
  ): Promise<ApiKey | Team | User | undefined> {
    if (typeof id !== 'string') return undefined;
    let values: Record<string, unknown>;
    try {
      values = readFields(patch, fields, 'patch');
    } catch (err) {
      if ((await this.readRecord(kind, id)) === undefined) return undefined;
      throw err;
    }
    return this.patchRecord(kind, id, values);
  }

  // Storage, implemented by each backend on input the front has checked.

  /** Stores a new key; refuses a taken id or hash and a team or user that does not exist. */
  protected abstract insertKey(values: Record<string, unknown>): Promise<ApiKey>;
  /** Stores a new team or user; refuses a taken id and (users) a team that does not exist. */
  protected abstract insertRecord(
    kind: 'team' | 'user',
    values: Record<string, unknown>,
  ): Promise<Team | User>;
  /** A copy of the record, or undefined. */
  protected abstract readRecord(kind: RecordKind, id: string): Promise<ApiKey | Team | User | undefined>;
  /** A copy of the key with this (lower-case) hash, or undefined. */
  protected abstract readKeyByHash(hash: string): Promise<ApiKey | undefined>;
  /** Copies of every record of a kind, in creation order. */
  protected abstract readAll(kind: RecordKind): Promise<(ApiKey | Team | User)[]>;
  /** Applies checked values (`null` clears), whole or not at all; undefined when there is no such record. */
  protected abstract patchRecord(
    kind: RecordKind,
    id: string,
    values: Record<string, unknown>,
  ): Promise<ApiKey | Team | User | undefined>;
  /** Marks a key revoked; false when there is no such key. */
  protected abstract revoke(id: string): Promise<boolean>;
  /** Deletes a team or user nothing references (else `in_use`); false when there is none. */
  protected abstract removeRecord(kind: 'team' | 'user', id: string): Promise<boolean>;
  /** The admission, in one atomic step. */
  protected abstract admitChecked(request: CheckedAdmission): Promise<Admission>;
  /**
   * Ends a reservation with the real figures, or (`undefined`) with its own estimate; resolves
   * true when it was open, false for an unknown or settled one.
   */
  protected abstract settleChecked(
    reservationId: string,
    settlement: CheckedSettlement | undefined,
  ): Promise<boolean>;
  /** The spend buckets of the UTC days `fromDay` to `toDay` (inclusive; infinite for no bound). */
  protected abstract spendBuckets(fromDay: number, toDay: number): Promise<SpendBucket[]>;
  /** Reads or records the failed-auth state of an address. */
  protected abstract authFailures(
    address: string,
    nowMs: number,
    mode: 'read' | 'record',
  ): Promise<AuthFailureState>;
  /** The key with a (checked) hash, if any, and the address's state read without a touch. */
  protected abstract lookup(hash: string | undefined, address: string, nowMs: number): Promise<KeyLookup>;
}

const CREATE_FIELDS: Readonly<Record<RecordKind, Fields>> = {
  key: KEY_CREATE_FIELDS,
  team: TEAM_CREATE_FIELDS,
  user: USER_CREATE_FIELDS,
};

/**
 * The checked values of a new record (unknown fields refused, `name`, and for keys `hash` and
 * `prefix`, required); throws `invalid_field` naming the field. Synchronous, for seeds too.
 */
export function checkNewRecord(kind: RecordKind, input: unknown): Record<string, unknown> {
  const values = readFields(input, CREATE_FIELDS[kind], 'create');
  required(values, 'name');
  if (kind === 'key') {
    required(values, 'hash');
    required(values, 'prefix');
  }
  return values;
}

/** The checked figures of a settlement; throws `invalid_field` naming the first bad one. */
function checkSettlement(settlement: Settlement): CheckedSettlement {
  if (typeof settlement !== 'object' || settlement === null) {
    throw new KeyStoreError('invalid_field', undefined, 'settlement must be an object');
  }
  const costUsd = checkAmount(settlement.costUsd, 'costUsd');
  const promptTokens = checkAmount(settlement.promptTokens, 'promptTokens');
  const completionTokens = checkAmount(settlement.completionTokens, 'completionTokens');
  const nowMs = checkInstant(settlement.nowMs, 'nowMs');
  if (settlement.model !== undefined && typeof settlement.model !== 'string') {
    throw new KeyStoreError('invalid_field', 'model', 'model must be a string or undefined');
  }
  const optional = (field: keyof TokenClasses): number =>
    settlement[field] === undefined ? 0 : checkAmount(settlement[field], field);
  return {
    model: settlement.model,
    costUsd,
    promptTokens,
    completionTokens,
    nowMs,
    cachedTokens: optional('cachedTokens'),
    cacheWriteTokens: optional('cacheWriteTokens'),
    reasoningTokens: optional('reasoningTokens'),
    audioPromptTokens: optional('audioPromptTokens'),
    audioCompletionTokens: optional('audioCompletionTokens'),
  };
}
