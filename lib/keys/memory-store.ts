// The embedded KeyStore: keys, teams, users and their accounting in this process's memory. The
// shared rules are the front's; the records and the accounting engine live in `memory/`.
import { OptionReader } from '../options.js';
import { MemoryAccounting } from './memory/accounting.js';
import { MemoryRecords, type RecordFields } from './memory/records.js';
import { resolveSeed, withEntry, type KeyStoreSeed } from './seed.js';
import {
  checkNewRecord,
  KeyStoreFront,
  type CheckedAdmission,
  type CheckedSettlement,
  type RecordKind,
  type SpendBucket,
} from './store-front.js';
import type { Admission, ApiKey, AuthFailureState, KeyLookup, KeyStore, Team, User } from './types.js';
import { resolveAccountingOptions, type AuthFailureOptions } from './validate.js';

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

/**
 * The embedded {@link KeyStore}: everything in this process's memory, for a single instance
 * (use a shared store when several instances serve the same keys).
 *
 * - Copies in and out: no object a caller passes or receives is ever kept or shared.
 * - `admit` checks, in this order, the model against the allow-lists of key, team and user
 *   (`model`), the budgets of key, team and user (spend + open reservations + estimate against
 *   budget + `budgetToleranceUsd`), the key's daily request and token quotas (UTC days), the rpm
 *   and tpm windows of key, team and user (GCRA, full-minute burst), and the key's
 *   `maxParallel`; it reserves only when all pass. Expiry and revocation are the middleware's to
 *   check. `retryAfterMs` is the GCRA wait (the longest of the windows that refused) for rpm/tpm,
 *   the time to the next 00:00 UTC for daily quotas, 1000 for a parallel slot, and `undefined`
 *   when waiting cannot help (a model or a budget; an estimate above a whole tpm limit or daily
 *   token quota).
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
export class MemoryKeyStore extends KeyStoreFront implements KeyStore {
  private readonly records: MemoryRecords;
  private readonly accounting: MemoryAccounting;

  constructor(options: MemoryKeyStoreOptions = {}) {
    super();
    const read = new OptionReader('MemoryKeyStore');
    read.options(options);
    const settings = resolveAccountingOptions('MemoryKeyStore', options);
    this.records = new MemoryRecords(read.function('clock', options.clock, Date.now));
    this.accounting = new MemoryAccounting(settings, this.records);
    if (options.seed !== undefined) this.applySeed(options.seed, settings.pepper);
  }

  /** Resolves at once: the memory store holds no timers or connections. Idempotent. */
  async close(): Promise<void> {}

  protected async insertKey(values: Record<string, unknown>): Promise<ApiKey> {
    return this.out('key', this.insertKeyNow(values)) as ApiKey;
  }

  protected async insertRecord(kind: 'team' | 'user', values: Record<string, unknown>): Promise<Team | User> {
    return this.out(kind, this.insertRecordNow(kind, values)) as Team | User;
  }

  protected async readRecord(kind: RecordKind, id: string): Promise<ApiKey | Team | User | undefined> {
    return this.records.of(kind).has(id) ? this.out(kind, id) : undefined;
  }

  protected async readKeyByHash(hash: string): Promise<ApiKey | undefined> {
    const id = this.records.keyIdOf(hash);
    return id === undefined ? undefined : (this.out('key', id) as ApiKey);
  }

  protected async readAll(kind: RecordKind): Promise<(ApiKey | Team | User)[]> {
    return Array.from(this.records.of(kind).keys(), (id) => this.out(kind, id));
  }

  protected async patchRecord(
    kind: RecordKind,
    id: string,
    values: Record<string, unknown>,
  ): Promise<ApiKey | Team | User | undefined> {
    return this.records.patch(kind, id, values) ? this.out(kind, id) : undefined;
  }

  protected async revoke(id: string): Promise<boolean> {
    return this.records.revoke(id);
  }

  protected async removeRecord(kind: 'team' | 'user', id: string): Promise<boolean> {
    if (!this.records.remove(kind, id)) return false;
    this.accounting.close(kind, id);
    return true;
  }

  protected async admitChecked(request: CheckedAdmission): Promise<Admission> {
    return this.accounting.admit(request);
  }

  protected async settleChecked(
    reservationId: string,
    settled: CheckedSettlement | undefined,
  ): Promise<boolean> {
    return this.accounting.settle(reservationId, settled);
  }

  protected async spendBuckets(fromDay: number, toDay: number): Promise<SpendBucket[]> {
    return this.accounting.spendBuckets(fromDay, toDay);
  }

  protected async authFailures(
    address: string,
    nowMs: number,
    mode: 'read' | 'record',
  ): Promise<AuthFailureState> {
    return this.accounting.authFailures(address, nowMs, mode);
  }
  protected async lookup(hash: string | undefined, address: string, nowMs: number): Promise<KeyLookup> {
    const id = hash === undefined ? undefined : this.records.keyIdOf(hash);
    return {
      key: id === undefined ? undefined : (this.out('key', id) as ApiKey),
      failures: this.accounting.authFailures(address, nowMs, 'peek'),
    };
  }

  private insertKeyNow(values: Record<string, unknown>): string {
    const id = this.records.insertKey(values);
    this.accounting.open('key', id);
    return id;
  }

  private insertRecordNow(kind: 'team' | 'user', values: Record<string, unknown>): string {
    const id = this.records.insertRecord(kind, values);
    this.accounting.open(kind, id);
    return id;
  }

  /** Teams, users and keys created synchronously, so a bad entry throws from the constructor. */
  private applySeed(seed: KeyStoreSeed, pepper: string | undefined): void {
    const resolved = resolveSeed(seed, { pepper });
    const apply = (
      list: object[],
      name: string,
      create: (values: Record<string, unknown>) => unknown,
      kind: RecordKind,
    ) => {
      list.forEach((input, index) => {
        try {
          create(checkNewRecord(kind, input));
        } catch (err) {
          throw withEntry(err, `${name}[${index}]`);
        }
      });
    };
    apply(resolved.teams, 'teams', (values) => this.insertRecordNow('team', values), 'team');
    apply(resolved.users, 'users', (values) => this.insertRecordNow('user', values), 'user');
    apply(resolved.keys, 'keys', (values) => this.insertKeyNow(values), 'key');
  }

  /** A fresh copy of a record with its spend: nothing in it is shared with the store. */
  private out(kind: RecordKind, id: string): ApiKey | Team | User {
    const fields = this.records.of(kind).get(id) as RecordFields;
    const copy = { ...fields, ...this.accounting.spendOf(kind, id) } as ApiKey | Team | User;
    if (copy.models !== undefined) copy.models = copy.models.slice();
    if (copy.metadata !== undefined) copy.metadata = structuredClone(copy.metadata);
    return copy;
  }
}
