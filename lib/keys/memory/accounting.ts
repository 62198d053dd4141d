// The memory store's accounting engine: spend and reservations per key, team and user, GCRA
// windows, daily quotas by UTC day, parallel slots, daily spend buckets and the failed-auth
// limiter. Each method runs synchronously, so each admission and settlement is atomic.
import { randomBytes } from 'node:crypto';
import { KeyStoreError } from '../errors.js';
import { gcraAdjust, gcraConsume, gcraState } from '../gcra.js';
import { modelAllowed } from '../glob.js';
import {
  addSettlement,
  emptyCounts,
  type CheckedAdmission,
  type CheckedSettlement,
  type RecordKind,
  type SpendBucket,
  unknownKey,
} from '../store-front.js';
import type { Admission, AuthFailureState, Limits, RateLimitState, RefusalReason } from '../types.js';
import { msUntilNextUtcMidnight, utcDayNumber } from '../utc.js';
import {
  BUDGET_EPSILON_USD,
  MAX_MODELS_PER_RECORD,
  OTHER_MODELS,
  PARALLEL_RETRY_AFTER_MS,
  type ResolvedAccounting,
} from '../validate.js';
import type { KeyFields, MemoryRecords, TeamFields, UserFields } from './records.js';

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

/** A key's daily quotas and parallel slots. */
interface KeyUsage {
  inFlight: number;
  /** The UTC day the daily counters belong to. */
  usageDay: number;
  requestsToday: number;
  tokensToday: number;
}

/** One subject of an admission: whose limits, and its account. */
interface Subject {
  kind: RecordKind;
  fields: Limits;
  account: Account;
}

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

interface AuthFailures {
  startMs: number;
  count: number;
}

type Refusal = Extract<Admission, { ok: false }>;

const NOT_BLOCKED: AuthFailureState = Object.freeze({ blocked: false, retryAfterMs: 0 });

/** The accounting of a memory store; see `MemoryKeyStore` for the rules it applies. */
export class MemoryAccounting {
  private readonly accounts: Record<RecordKind, Map<string, Account>> = {
    key: new Map(),
    team: new Map(),
    user: new Map(),
  };
  private readonly usage = new Map<string, KeyUsage>();
  private readonly reservations = new Map<string, Reservation>();
  /** UTC day → bucket identity → bucket. */
  private readonly buckets = new Map<number, Map<string, SpendBucket>>();
  private latestSpendDay = Number.MIN_SAFE_INTEGER;
  /** Insertion order is recency: the first entry is the least recently touched. */
  private readonly failures = new Map<string, AuthFailures>();
  private readonly reservationPrefix = `res_${randomBytes(6).toString('base64url')}_`;
  private reservationCount = 0;

  constructor(
    private readonly settings: ResolvedAccounting,
    private readonly records: MemoryRecords,
  ) {}

  /** Opens the account of a new record. */
  open(kind: RecordKind, id: string): void {
    this.accounts[kind].set(id, {
      spendUsd: 0,
      spendByModel: new Map(),
      reservedUsd: 0,
      openReservations: 0,
      rpmTatMs: 0,
      tpmTatMs: 0,
    });
    if (kind === 'key')
      this.usage.set(id, {
        inFlight: 0,
        usageDay: Number.MIN_SAFE_INTEGER,
        requestsToday: 0,
        tokensToday: 0,
      });
  }

  /** Closes the account of a deleted team or user. */
  close(kind: 'team' | 'user', id: string): void {
    this.accounts[kind].delete(id);
  }

  /** A record's settled spend, as fresh objects. */
  spendOf(kind: RecordKind, id: string): { spendUsd: number; spendByModel: Record<string, number> } {
    const account = this.accounts[kind].get(id)!;
    return { spendUsd: account.spendUsd, spendByModel: Object.fromEntries(account.spendByModel) };
  }

  /**
   * Checks, in this order, the model against the allow-lists of key, team and user, the budgets
   * of key, team and user, the key's daily quotas, the rpm and tpm windows of all three, and the
   * key's parallel slots; reserves only when all pass.
   */
  admit(request: CheckedAdmission): Admission {
    const key = this.records.keys.get(request.keyId);
    if (key === undefined) throw unknownKey();
    const team = key.teamId === undefined ? undefined : this.records.teams.get(key.teamId);
    const user = key.userId === undefined ? undefined : this.records.users.get(key.userId);
    const { costUsd: cost, tokens, nowMs: now } = request;
    const subjects: (Subject | undefined)[] = [
      this.subject('key', key),
      team === undefined ? undefined : this.subject('team', team),
      user === undefined ? undefined : this.subject('user', user),
    ];
    for (const subject of subjects) {
      if (subject !== undefined && !modelAllowed(request.model, subject.fields.models)) {
        return refusal('model', subject.kind, undefined, undefined);
      }
    }
    for (const subject of subjects) {
      if (subject !== undefined && this.overBudget(subject, cost)) {
        return refusal('budget', subject.kind, undefined, tightest(subjects, now));
      }
    }

    const usage = this.usage.get(key.id)!;
    const day = utcDayNumber(now);
    const fresh = day > usage.usageDay;
    const { dailyRequests, dailyTokens, maxParallel } = key;
    if (dailyRequests !== undefined && (fresh ? 0 : usage.requestsToday) + 1 > dailyRequests) {
      return refusal('daily_requests', 'key', msUntilNextUtcMidnight(now), tightest(subjects, now));
    }
    if (dailyTokens !== undefined && (fresh ? 0 : usage.tokensToday) + tokens > dailyTokens) {
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

    if (maxParallel !== undefined && usage.inFlight >= maxParallel) {
      return refusal('parallel', 'key', PARALLEL_RETRY_AFTER_MS, tightest(subjects, now));
    }
    // Refused before anything is committed, as on Redis: a refusal changes nothing.
    if (request.reservationId !== undefined && this.reservations.has(request.reservationId)) {
      throw new KeyStoreError('invalid_field', 'reservationId', 'reservationId is already in use');
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
      usage.usageDay = day;
      usage.requestsToday = 0;
      usage.tokensToday = 0;
    }
    usage.requestsToday += 1;
    usage.tokensToday += tokens;
    usage.inFlight += 1;
    const reservationId =
      request.reservationId ?? this.reservationPrefix + (++this.reservationCount).toString(36);
    this.reservations.set(reservationId, {
      keyId: key.id,
      teamId: team?.id,
      userId: user?.id,
      model: request.model,
      costUsd: cost,
      tokens,
      day,
      admittedAtMs: now,
    });
    return { ok: true, reservationId, rateLimit: tightest(subjects, now) };
  }

  /** Ends a reservation (with its own estimate when `settled` is undefined); false when not open. */
  settle(reservationId: string, settled: CheckedSettlement | undefined): boolean {
    const reservation = this.reservations.get(reservationId);
    if (reservation === undefined) return false;
    this.reservations.delete(reservationId);
    const applied: CheckedSettlement = settled ?? {
      model: reservation.model,
      costUsd: reservation.costUsd,
      promptTokens: reservation.tokens,
      completionTokens: 0,
      nowMs: reservation.admittedAtMs,
      ...noClasses(),
    };
    const tokenDelta = applied.promptTokens + applied.completionTokens - reservation.tokens;
    const now = applied.nowMs;
    const slot = this.settleAccount('key', reservation.keyId, reservation.costUsd, applied, tokenDelta);
    const usage = this.usage.get(reservation.keyId);
    if (usage !== undefined) {
      usage.inFlight = usage.inFlight > 0 ? usage.inFlight - 1 : 0;
      if (usage.usageDay === reservation.day) usage.tokensToday = Math.max(0, usage.tokensToday + tokenDelta);
    }
    if (reservation.teamId !== undefined) {
      this.settleAccount('team', reservation.teamId, reservation.costUsd, applied, tokenDelta);
    }
    if (reservation.userId !== undefined) {
      this.settleAccount('user', reservation.userId, reservation.costUsd, applied, tokenDelta);
    }
    this.addToBucket(reservation, slot, applied, now);
    return true;
  }

  /** The spend buckets of the UTC days `fromDay` to `toDay`, as copies. */
  spendBuckets(fromDay: number, toDay: number): SpendBucket[] {
    const out: SpendBucket[] = [];
    for (const [day, buckets] of this.buckets) {
      if (day < fromDay || day > toDay) continue;
      for (const bucket of buckets.values()) out.push({ ...bucket });
    }
    return out;
  }

  /**
   * Reads or records the failed-auth state of an address. Both count as a touch for the
   * least-recently-used bound; a `peek` (authentication's look) changes nothing.
   */
  authFailures(address: string, now: number, mode: 'peek' | 'read' | 'record'): AuthFailureState {
    const { authMax, authWindowMs, authMaxTracked } = this.settings;
    if (mode === 'peek') {
      const seen = this.failures.get(address);
      if (seen === undefined || now >= seen.startMs + authWindowMs) return NOT_BLOCKED;
      return authState(seen, now, authMax, authWindowMs);
    }
    let failures = this.failures.get(address);
    if (failures !== undefined) this.failures.delete(address);
    const expired = failures !== undefined && now >= failures.startMs + authWindowMs;
    if (mode === 'read') {
      if (failures === undefined || expired) return NOT_BLOCKED;
      this.failures.set(address, failures);
      return authState(failures, now, authMax, authWindowMs);
    }
    if (failures === undefined || expired) {
      failures = { startMs: now, count: 0 };
      if (this.failures.size >= authMaxTracked) this.failures.delete(this.failures.keys().next().value!);
    }
    if (failures.count < authMax) failures.count += 1;
    this.failures.set(address, failures);
    return authState(failures, now, authMax, authWindowMs);
  }

  private subject(kind: RecordKind, fields: KeyFields | TeamFields | UserFields): Subject {
    return { kind, fields, account: this.accounts[kind].get(fields.id)! };
  }

  private overBudget(subject: Subject, costUsd: number): boolean {
    const budget = subject.fields.budgetUsd;
    if (budget === undefined) return false;
    const account = subject.account;
    return (
      account.spendUsd + account.reservedUsd + costUsd >
      budget + this.settings.toleranceUsd + BUDGET_EPSILON_USD
    );
  }

  /**
   * Replaces the estimate reserved on a record by the real cost and corrects its tpm window.
   * Returns the name the spend was kept under: the model, `(other)` past the bound, or undefined.
   */
  private settleAccount(
    kind: RecordKind,
    id: string,
    reservedUsd: number,
    settled: CheckedSettlement,
    tokenDelta: number,
  ): string | undefined {
    const account = this.accounts[kind].get(id);
    if (account === undefined) return settled.model;
    account.openReservations = account.openReservations > 0 ? account.openReservations - 1 : 0;
    // With nothing open the sum is exactly zero, so float drift cannot pile up.
    account.reservedUsd = account.openReservations > 0 ? Math.max(0, account.reservedUsd - reservedUsd) : 0;
    account.spendUsd += settled.costUsd;
    const tpm = this.records.of(kind).get(id)?.tpm;
    if (tpm !== undefined && tokenDelta !== 0) {
      account.tpmTatMs = gcraAdjust(account.tpmTatMs, tokenDelta, settled.nowMs, tpm);
    }
    const model = settled.model;
    if (model === undefined) return undefined;
    const byModel = account.spendByModel;
    const slot = byModel.has(model) || byModel.size < MAX_MODELS_PER_RECORD ? model : OTHER_MODELS;
    byModel.set(slot, (byModel.get(slot) ?? 0) + settled.costUsd);
    return slot;
  }

  private addToBucket(
    reservation: Reservation,
    model: string | undefined,
    settled: CheckedSettlement,
    now: number,
  ): void {
    const retentionDays = this.settings.retentionDays;
    const day = utcDayNumber(now);
    if (day > this.latestSpendDay) {
      this.latestSpendDay = day;
      for (const old of this.buckets.keys()) {
        if (old <= day - retentionDays) this.buckets.delete(old);
      }
    }
    if (day <= this.latestSpendDay - retentionDays) return;
    let buckets = this.buckets.get(day);
    if (buckets === undefined) {
      buckets = new Map();
      this.buckets.set(day, buckets);
    }
    const teamId = reservation.teamId ?? null;
    const userId = reservation.userId ?? null;
    const modelGroup = model ?? null;
    // A separator no id or model can hold keeps identities apart without serializing them.
    const identity = `${reservation.keyId}\u0000${teamId ?? ''}\u0000${userId ?? ''}\u0000${modelGroup ?? '\u0001'}`;
    let bucket = buckets.get(identity);
    if (bucket === undefined) {
      bucket = { keyId: reservation.keyId, teamId, userId, model: modelGroup, ...emptyCounts() };
      buckets.set(identity, bucket);
    }
    addSettlement(bucket, settled);
  }
}

function noClasses() {
  return {
    cachedTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    audioPromptTokens: 0,
    audioCompletionTokens: 0,
  };
}

function authState(failures: AuthFailures, now: number, max: number, windowMs: number): AuthFailureState {
  return failures.count >= max
    ? { blocked: true, retryAfterMs: failures.startMs + windowMs - now }
    : { blocked: false, retryAfterMs: 0 };
}

function refusal(
  reason: RefusalReason,
  subject: RecordKind,
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
  subject: RecordKind,
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
function tightest(subjects: readonly (Subject | undefined)[], now: number): RateLimitState | undefined {
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
