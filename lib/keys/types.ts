// The key-accounting model (keys, teams, users) and the KeyStore contract every store implements.
// Every method is async so a Redis store drops in without changing a middleware.
import type { TokenClasses } from '../usage.js';

export type { TokenClasses } from '../usage.js';

/** Limits shared by keys, teams and users. Absent means unlimited. */
export interface Limits {
  /** Total budget in USD; spend plus open reservations may not pass it. */
  budgetUsd?: number;
  /** Requests per minute (sliding, GCRA). */
  rpm?: number;
  /** Tokens per minute (sliding, GCRA; estimated at admission, corrected at settlement). */
  tpm?: number;
  /** Model allow-list; `*` is a glob (`gpt-4o*`). Absent or empty allows every model. */
  models?: string[];
}

/** An API key as stored. Never holds the plaintext secret. */
export interface ApiKey extends Limits {
  id: string;
  name: string;
  /** Hex SHA-256 (or HMAC-SHA-256 with the store's pepper) of the secret. */
  hash: string;
  /** The first characters of the secret (`sk-llmux-AbCd`), so operators can tell keys apart. */
  prefix: string;
  teamId?: string;
  userId?: string;
  /** Most requests in flight at once. */
  maxParallel?: number;
  /** Requests per UTC day. */
  dailyRequests?: number;
  /** Tokens per UTC day. */
  dailyTokens?: number;
  /** Expiry as ms since the epoch. */
  expiresAt?: number;
  revoked: boolean;
  /** Settled spend in USD. */
  spendUsd: number;
  /** Settled spend in USD per model. */
  spendByModel: Record<string, number>;
  /** ms since the epoch. */
  createdAt: number;
  metadata?: Record<string, unknown>;
}

/** A team: its own limits, and the sum of its keys' spend. */
export interface Team extends Limits {
  id: string;
  name: string;
  spendUsd: number;
  spendByModel: Record<string, number>;
  createdAt: number;
  metadata?: Record<string, unknown>;
}

/** A user: its own limits, and the sum of its keys' spend. */
export interface User extends Limits {
  id: string;
  name: string;
  teamId?: string;
  spendUsd: number;
  spendByModel: Record<string, number>;
  createdAt: number;
  metadata?: Record<string, unknown>;
}

/** Fields a caller may set when creating a key (the store fills the rest). */
export type NewApiKey = Omit<ApiKey, 'id' | 'revoked' | 'spendUsd' | 'spendByModel' | 'createdAt'> & {
  /** Default: generated. */
  id?: string;
};
/** Fields a caller may set when creating a team. */
export type NewTeam = Omit<Team, 'id' | 'spendUsd' | 'spendByModel' | 'createdAt'> & { id?: string };
/** Fields a caller may set when creating a user. */
export type NewUser = Omit<User, 'id' | 'spendUsd' | 'spendByModel' | 'createdAt'> & { id?: string };

/** Limits and names that can be changed after creation; `null` clears a limit. */
export type KeyPatch = Partial<{
  [
    K in
      | 'name'
      | 'budgetUsd'
      | 'rpm'
      | 'tpm'
      | 'models'
      | 'maxParallel'
      | 'dailyRequests'
      | 'dailyTokens'
      | 'expiresAt'
      | 'metadata'
  ]: ApiKey[K] | null;
}>;
/** Changeable fields of a team; `null` clears a limit. */
export type TeamPatch = Partial<{
  [K in 'name' | 'budgetUsd' | 'rpm' | 'tpm' | 'models' | 'metadata']: Team[K] | null;
}>;
/** Changeable fields of a user; `null` clears a limit. */
export type UserPatch = Partial<{
  [K in 'name' | 'teamId' | 'budgetUsd' | 'rpm' | 'tpm' | 'models' | 'metadata']: User[K] | null;
}>;

/** What admission asks the store to reserve for one request. */
export interface AdmissionRequest {
  keyId: string;
  /**
   * The model asked for, checked against the key's, team's and user's allow-lists in the same
   * atomic step as every limit (a request without a model passes only empty lists).
   */
  model: string | undefined;
  /** Worst-case cost of the request in USD, reserved against key, team and user budgets. */
  estimatedCostUsd: number;
  /** Worst-case tokens, counted against tpm and the daily token quota. */
  estimatedTokens: number;
  /** Current time, ms since the epoch (the store never reads a clock of its own). */
  nowMs: number;
  /**
   * The id to reserve under, unique across instances (1–128 characters of `[A-Za-z0-9._:-]`):
   * the caller then knows it even when the admission fails to answer, and can settle it (at no
   * cost) should it land late. Default: one the store makes.
   */
  reservationId?: string;
}

/** Which limit refused a request; `model` is an allow-list that does not hold the model. */
export type RefusalReason =
  'model' | 'budget' | 'rpm' | 'tpm' | 'daily_requests' | 'daily_tokens' | 'parallel';

/** The state of the tightest rate window, for the `RateLimit-*` headers. */
export interface RateLimitState {
  /** The window's limit (requests or tokens per minute). */
  limit: number;
  /** What is left of it now. */
  remaining: number;
  /** ms until the window is full again. */
  resetMs: number;
}

/** The answer to an admission. */
export type Admission =
  | { ok: true; reservationId: string; rateLimit: RateLimitState | undefined }
  | {
      ok: false;
      reason: RefusalReason;
      /** Whose limit it was. */
      subject: 'key' | 'team' | 'user';
      /** When trying again can succeed, in ms; undefined when it cannot (a spent budget). */
      retryAfterMs: number | undefined;
      rateLimit: RateLimitState | undefined;
    };

/** What a request really cost, reported once when it ends. */
export interface Settlement extends Partial<TokenClasses> {
  model: string | undefined;
  costUsd: number;
  promptTokens: number;
  completionTokens: number;
  nowMs: number;
}

/** One row of a spend report. */
export interface SpendRow extends TokenClasses {
  /** The key, team or user id, or the model name; `null` for requests without a team/user. */
  group: string | null;
  spendUsd: number;
  requests: number;
  promptTokens: number;
  completionTokens: number;
}

/** A spend query: grouped, between two instants (UTC day granularity). */
export interface SpendQuery {
  groupBy: 'key' | 'team' | 'user' | 'model';
  /** Inclusive, ms since the epoch; the UTC day containing it is included. */
  fromMs?: number;
  /** Inclusive, ms since the epoch; the UTC day containing it is included. */
  toMs?: number;
}

/** The failed-auth limiter's view of one client address. */
export interface AuthFailureState {
  /** True while the address has used up its failures. */
  blocked: boolean;
  /** ms until the window ends (when blocked). */
  retryAfterMs: number;
}

/**
 * The records: keys, teams and users. A store copies on the way in and on the way out, so a
 * caller can never change stored state through an object it holds.
 */
export interface KeyDirectory {
  createKey(input: NewApiKey): Promise<ApiKey>;
  getKey(id: string): Promise<ApiKey | undefined>;
  /** The key whose hash is `hash` (revoked and expired ones included; the caller decides). */
  findKeyByHash(hash: string): Promise<ApiKey | undefined>;
  listKeys(): Promise<ApiKey[]>;
  /** Undefined when no such key. */
  updateKey(id: string, patch: KeyPatch): Promise<ApiKey | undefined>;
  /** False when no such key. Revocation is permanent. */
  revokeKey(id: string): Promise<boolean>;

  createTeam(input: NewTeam): Promise<Team>;
  getTeam(id: string): Promise<Team | undefined>;
  listTeams(): Promise<Team[]>;
  updateTeam(id: string, patch: TeamPatch): Promise<Team | undefined>;
  deleteTeam(id: string): Promise<boolean>;

  createUser(input: NewUser): Promise<User>;
  getUser(id: string): Promise<User | undefined>;
  listUsers(): Promise<User[]>;
  updateUser(id: string, patch: UserPatch): Promise<User | undefined>;
  deleteUser(id: string): Promise<boolean>;
}

/** Accounting: each admission and settlement is one atomic operation, whatever the backend. */
export interface KeyAccounting {
  /**
   * Atomically checks the model against the allow-lists and every limit of the key, its team and
   * its user, and when all pass,
   * reserves the estimate (budget, tpm, daily tokens), counts the request (rpm, daily requests)
   * and takes a parallel slot. A refusal changes nothing.
   */
  admit(request: AdmissionRequest): Promise<Admission>;
  /**
   * Atomically replaces a reservation with the real cost: spend (per model too) on key, team
   * and user, the tpm and daily-token windows corrected to real tokens, the parallel slot freed.
   * Settling an unknown or already settled reservation does nothing (idempotent).
   */
  settle(reservationId: string, settlement: Settlement): Promise<void>;
  /** Spend grouped as asked, from settled requests. */
  spend(query: SpendQuery): Promise<SpendRow[]>;
}

/** What authenticating one request reads, in one step of the store. */
export interface KeyLookup {
  /** The key with the presented hash (revoked and expired ones included; the caller decides). */
  key: ApiKey | undefined;
  /** The failed-auth state of the client's address, read without counting or touching anything. */
  failures: AuthFailureState;
}

/** The failed-auth limiter: failures counted per client address, in a fixed window. */
export interface AuthFailureLimiter {
  /**
   * The key whose hash is `hash` and the failed-auth state of `address`, in one step (one round
   * trip on a shared store). A `hash` that is not 64 hex digits finds no key.
   */
  lookupKey(hash: string, address: string, nowMs: number): Promise<KeyLookup>;
  /** Whether `address` is blocked by the failed-auth limiter now. */
  authFailureState(address: string, nowMs: number): Promise<AuthFailureState>;
  /** Counts one failed authentication for `address`; a success never resets it. */
  recordAuthFailure(address: string, nowMs: number): Promise<AuthFailureState>;
}

/**
 * Storage for keys, teams, users and their accounting: the three contracts in one. Accounting
 * state changes only through the atomic `admit` / `settle` / `recordAuthFailure` operations.
 */
export interface KeyStore extends KeyDirectory, KeyAccounting, AuthFailureLimiter {
  /** Releases timers and connections. Idempotent; safe before use and concurrently. */
  close(): Promise<void>;
}
