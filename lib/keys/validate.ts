// Rules every KeyStore shares, so the memory and the Redis stores refuse and accept the same
// things: option resolution, input validation of records and accounting calls, and the bounds.
import { OptionReader } from '../options.js';
import { KeyStoreError } from './errors.js';

/** Options of the failed-auth limiter. */
export interface AuthFailureOptions {
  /** Failures per window after which an address is blocked until the window ends. Default 5. */
  max?: number;
  /** Window length in ms; it starts at an address's first failure. Default 900 000 (15 minutes). */
  windowMs?: number;
  /** Most addresses tracked at once; past it the least recently touched is forgotten. Default 10 000. */
  maxTrackedAddresses?: number;
}

/** The options every store takes for its accounting (a subset of each store's own options). */
export interface AccountingOptions {
  /** USD by which spend plus open reservations may pass a budget. Default 0. */
  budgetToleranceUsd?: number;
  /** The failed-auth limiter. Defaults: 5 failures per 15 minutes, 10 000 addresses. */
  authFailures?: AuthFailureOptions;
  /** Whole UTC days of spend buckets kept for `spend()`. Default 400. */
  spendRetentionDays?: number;
  /** Pepper for hashing a seed's plaintext keys (HMAC-SHA-256). Default: none (SHA-256). */
  pepper?: string;
}

/** {@link AccountingOptions} with every default filled in. */
export interface ResolvedAccounting {
  toleranceUsd: number;
  authMax: number;
  authWindowMs: number;
  authMaxTracked: number;
  retentionDays: number;
  pepper: string | undefined;
}

/** Most patterns in a `models` allow-list, and the longest pattern. */
const MAX_MODEL_PATTERNS = 256;
const MAX_MODEL_PATTERN_LENGTH = 256;
/** Longest `name`. */
const MAX_NAME_LENGTH = 200;
/** Longest `prefix`. */
const MAX_PREFIX_LENGTH = 64;
/** Largest `metadata`, as JSON characters. */
const MAX_METADATA_JSON_LENGTH = 16_384;
/** Longest client address the failed-auth limiter accepts. */
const MAX_ADDRESS_LENGTH = 1024;
/** Distinct models in one record's `spendByModel`; spend on further models is kept under `(other)`. */
export const MAX_MODELS_PER_RECORD = 256;
/** Where spend on models past {@link MAX_MODELS_PER_RECORD} is kept. */
export const OTHER_MODELS = '(other)';
/** A parallel-slot refusal clears when a request ends; this is only a hint. */
export const PARALLEL_RETRY_AFTER_MS = 1000;
/** Float slack for budget sums (one nano-dollar). */
export const BUDGET_EPSILON_USD = 1e-9;
const ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
const HASH_PATTERN = /^[0-9a-fA-F]{64}$/;

/**
 * Checks the accounting options and fills their defaults. `owner` names the store in the
 * TypeError (`MemoryKeyStore: authFailures.max must be a positive integer, got 0`).
 */
export function resolveAccountingOptions(owner: string, options: AccountingOptions): ResolvedAccounting {
  const read = new OptionReader(owner);
  const auth = read.object('authFailures', options.authFailures);
  const pepper = options.pepper;
  // The pepper is a secret: name the rule, never echo the value.
  if (pepper !== undefined && (typeof pepper !== 'string' || pepper.length === 0)) {
    throw new TypeError(`${owner}: pepper must be a non-empty string`);
  }
  return {
    toleranceUsd: read.nonNegativeNumber('budgetToleranceUsd', options.budgetToleranceUsd, 0),
    authMax: read.positiveInteger('authFailures.max', auth.max, 5),
    authWindowMs: read.positiveInteger('authFailures.windowMs', auth.windowMs, 900_000),
    authMaxTracked: read.positiveInteger(
      'authFailures.maxTrackedAddresses',
      auth.maxTrackedAddresses,
      10_000,
    ),
    retentionDays: read.positiveInteger('spendRetentionDays', options.spendRetentionDays, 400),
    pepper,
  };
}

/** The refusal to delete a team or user that `by` (keys, users) still reference. */
export function inUse(kind: string, by: string): KeyStoreError {
  return new KeyStoreError('in_use', 'id', `the ${kind} is still referenced by ${by}`);
}

// Input validation: each check returns the value to store (a copy where it is an object).

/** Checks one field's value and returns the value to store; throws `invalid_field` naming it. */
export type Check = (value: unknown, field: string) => unknown;
/** The fields a record, or a patch of it, may set, each with its check. */
export type Fields = Readonly<Record<string, Check>>;

function isAmount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}

function invalid(field: string, rule: string): KeyStoreError {
  return new KeyStoreError('invalid_field', field, `${field} ${rule}`);
}

/** A finite number >= 0 (USD, tokens), or `invalid_field` naming `field`. */
export function checkAmount(value: unknown, field: string): number {
  if (!isAmount(value)) throw invalid(field, 'must be a finite number >= 0');
  return value;
}

/** A finite number of ms since the epoch, or `invalid_field` naming `field`. */
export function checkInstant(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw invalid(field, 'must be a finite number (ms since the epoch)');
  return value;
}

function checkCount(value: unknown, field: string): number {
  if (!isCount(value)) throw invalid(field, 'must be a positive integer');
  return value;
}

function checkName(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_NAME_LENGTH) {
    throw invalid(field, `must be a non-empty string of at most ${MAX_NAME_LENGTH} characters`);
  }
  return value;
}

function checkId(value: unknown, field: string): string {
  // `.` and `..` pass the pattern but name no record in a URL path: they would be unreachable.
  if (typeof value !== 'string' || !ID_PATTERN.test(value) || value === '.' || value === '..') {
    throw invalid(field, 'must be 1-128 characters of A-Z, a-z, 0-9 and . _ : @ -, and not . or ..');
  }
  return value;
}

function checkHash(value: unknown, field: string): string {
  if (typeof value !== 'string' || !HASH_PATTERN.test(value)) throw invalid(field, 'must be 64 hex digits');
  return value.toLowerCase();
}

function checkPrefix(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length > MAX_PREFIX_LENGTH) {
    throw invalid(field, `must be a string of at most ${MAX_PREFIX_LENGTH} characters`);
  }
  return value;
}

function checkModels(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length > MAX_MODEL_PATTERNS) {
    throw invalid(field, `must be an array of at most ${MAX_MODEL_PATTERNS} model names or patterns`);
  }
  const models: string[] = [];
  for (const model of value) {
    if (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_PATTERN_LENGTH) {
      throw invalid(field, `must hold non-empty strings of at most ${MAX_MODEL_PATTERN_LENGTH} characters`);
    }
    models.push(model);
  }
  return models;
}

/** Metadata is kept as JSON would keep it, so every store (Redis too) gives back the same thing. */
function checkMetadata(value: unknown, field: string): Record<string, unknown> {
  let json: string | undefined;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    try {
      json = JSON.stringify(value);
    } catch {
      json = undefined;
    }
  }
  if (json === undefined || json.length > MAX_METADATA_JSON_LENGTH) {
    throw invalid(field, `must be a JSON object of at most ${MAX_METADATA_JSON_LENGTH} characters`);
  }
  return JSON.parse(json) as Record<string, unknown>;
}

/** A client address the failed-auth limiter accepts (a bounded string), or `invalid_field`. */
export function checkAddress(address: unknown): void {
  if (typeof address !== 'string' || address.length > MAX_ADDRESS_LENGTH) {
    throw invalid('address', `must be a string of at most ${MAX_ADDRESS_LENGTH} characters`);
  }
}

const LIMIT_FIELDS: Fields = Object.freeze({
  name: checkName,
  budgetUsd: checkAmount,
  rpm: checkCount,
  tpm: checkCount,
  models: checkModels,
  metadata: checkMetadata,
});
/** Fields `updateKey` may change. */
export const KEY_PATCH_FIELDS: Fields = Object.freeze({
  ...LIMIT_FIELDS,
  maxParallel: checkCount,
  dailyRequests: checkCount,
  dailyTokens: checkCount,
  expiresAt: checkAmount,
});
/** Fields `createKey` may set. */
export const KEY_CREATE_FIELDS: Fields = Object.freeze({
  ...KEY_PATCH_FIELDS,
  id: checkId,
  hash: checkHash,
  prefix: checkPrefix,
  teamId: checkId,
  userId: checkId,
});
/** Fields `updateTeam` may change. */
export const TEAM_PATCH_FIELDS: Fields = LIMIT_FIELDS;
/** Fields `createTeam` may set. */
export const TEAM_CREATE_FIELDS: Fields = Object.freeze({ ...LIMIT_FIELDS, id: checkId });
/** Fields `updateUser` may change. */
export const USER_PATCH_FIELDS: Fields = Object.freeze({ ...LIMIT_FIELDS, teamId: checkId });
/** Fields `createUser` may set. */
export const USER_CREATE_FIELDS: Fields = Object.freeze({ ...USER_PATCH_FIELDS, id: checkId });

/** Every record's fields, at creation and in a patch: the one schema stores and the management API read. */
export const RECORD_FIELDS: Readonly<Record<'key' | 'team' | 'user', { create: Fields; patch: Fields }>> = {
  key: { create: KEY_CREATE_FIELDS, patch: KEY_PATCH_FIELDS },
  team: { create: TEAM_CREATE_FIELDS, patch: TEAM_PATCH_FIELDS },
  user: { create: USER_CREATE_FIELDS, patch: USER_PATCH_FIELDS },
};

/**
 * The checked values of `input`'s known fields (`undefined` ones left out). An unknown field is
 * refused; in a patch `null` clears a field (all but `name`).
 */
export function readFields(
  input: unknown,
  fields: Fields,
  mode: 'create' | 'patch',
): Record<string, unknown> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new KeyStoreError('invalid_field', undefined, `the ${mode} must be an object`);
  }
  const values: Record<string, unknown> = {};
  for (const field of Object.keys(input)) {
    if (!Object.hasOwn(fields, field)) throw invalid(field, 'is not a field that can be set');
    const value = (input as Record<string, unknown>)[field];
    if (value === undefined) continue;
    if (value === null && mode === 'patch' && field !== 'name') {
      values[field] = null;
      continue;
    }
    values[field] = fields[field]!(value, field);
  }
  return values;
}

/** Throws `invalid_field` when `field` is missing from checked `values`. */
export function required(values: Record<string, unknown>, field: string): void {
  if (values[field] === undefined) throw invalid(field, 'is required');
}

/** `fields` with `values` applied: a fresh object, so a failed update changes nothing. */
export function patched<T extends object>(fields: T, values: Record<string, unknown>): T {
  const next = { ...fields } as Record<string, unknown>;
  for (const field of Object.keys(values)) {
    if (values[field] === null) delete next[field];
    else next[field] = values[field];
  }
  return next as T;
}
