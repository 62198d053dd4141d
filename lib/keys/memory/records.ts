// The memory store's records: keys, teams and users by id (and keys by hash), with the
// referential rules (a key's team and user exist; a referenced team or user stays). Holds the
// fields only; spend and limits live in the accounting beside it.
import { randomBytes } from 'node:crypto';
import { KeyStoreError } from '../errors.js';
import type { RecordKind } from '../store-front.js';
import type { ApiKey, Team, User } from '../types.js';
import { inUse, patched } from '../validate.js';

/** A key's stored fields (spend is the accounting's). */
export type KeyFields = Omit<ApiKey, 'spendUsd' | 'spendByModel'>;
/** A team's stored fields. */
export type TeamFields = Omit<Team, 'spendUsd' | 'spendByModel'>;
/** A user's stored fields. */
export type UserFields = Omit<User, 'spendUsd' | 'spendByModel'>;
/** The stored fields of any record. */
export type RecordFields = KeyFields | TeamFields | UserFields;

/**
 * The records of a memory store. Every method runs synchronously and either applies whole or
 * throws before changing anything. Field objects are replaced, never mutated, so a copy handed
 * out earlier is never changed behind a caller's back.
 */
export class MemoryRecords {
  readonly keys = new Map<string, KeyFields>();
  readonly teams = new Map<string, TeamFields>();
  readonly users = new Map<string, UserFields>();
  private readonly keyIdByHash = new Map<string, string>();

  constructor(private readonly clock: () => number) {}

  /** The map of a kind. */
  of(kind: RecordKind): Map<string, RecordFields> {
    return kind === 'key' ? this.keys : kind === 'team' ? this.teams : this.users;
  }

  /** The id of the key with this hash, if any. */
  keyIdOf(hash: string): string | undefined {
    return this.keyIdByHash.get(hash);
  }

  /** Stores a new key from checked values; returns its id. */
  insertKey(values: Record<string, unknown>): string {
    const hash = values.hash as string;
    this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    this.mustExist(this.users, values.userId, 'userId', 'user');
    if (this.keyIdByHash.has(hash)) {
      throw new KeyStoreError('duplicate_hash', 'hash', 'a key with this hash already exists');
    }
    const id = this.newId(this.keys, values.id, 'key');
    this.keys.set(id, { ...values, id, revoked: false, createdAt: this.clock() } as KeyFields);
    this.keyIdByHash.set(hash, id);
    return id;
  }

  /** Stores a new team or user from checked values; returns its id. */
  insertRecord(kind: 'team' | 'user', values: Record<string, unknown>): string {
    if (kind === 'user') this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    const records = this.of(kind);
    const id = this.newId(records, values.id, kind);
    records.set(id, { ...values, id, createdAt: this.clock() } as RecordFields);
    return id;
  }

  /** Applies checked values to a record; false when there is none. */
  patch(kind: RecordKind, id: string, values: Record<string, unknown>): boolean {
    const records = this.of(kind);
    const fields = records.get(id);
    if (fields === undefined) return false;
    if (kind === 'user') this.mustExist(this.teams, values.teamId, 'teamId', 'team');
    records.set(id, patched(fields, values));
    return true;
  }

  /** Marks a key revoked, for good; false when there is none. */
  revoke(id: string): boolean {
    const fields = this.keys.get(id);
    if (fields === undefined) return false;
    this.keys.set(id, { ...fields, revoked: true });
    return true;
  }

  /** Deletes a team or user nothing references; false when there is none. */
  remove(kind: 'team' | 'user', id: string): boolean {
    if (!this.of(kind).has(id)) return false;
    const field = kind === 'team' ? 'teamId' : 'userId';
    for (const key of this.keys.values()) {
      if (key[field] === id) throw inUse(kind, 'keys');
    }
    if (kind === 'team') {
      for (const user of this.users.values()) {
        if (user.teamId === id) throw inUse('team', 'users');
      }
    }
    return this.of(kind).delete(id);
  }

  /** The given id when it is free, or a new random one (`key_…`, `team_…`, `user_…`). */
  private newId(records: Map<string, unknown>, given: unknown, kind: RecordKind): string {
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

  private mustExist(records: Map<string, unknown>, id: unknown, field: string, kind: string): void {
    if (typeof id === 'string' && !records.has(id)) {
      throw new KeyStoreError('invalid_field', field, `${field} names no existing ${kind}`);
    }
  }
}
