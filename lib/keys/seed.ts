// Seeding a KeyStore from a plain config object: teams, then users, then keys given as
// plaintext (hashed here, never kept) or as hashes.
import { displayPrefix } from './generate.js';
import { KeyStoreError, isKeyStoreError } from './errors.js';
import { hashApiKey } from './hash.js';
import type { KeyStore, NewApiKey, NewTeam, NewUser } from './types.js';

/** A key in a seed: its fields as for `createKey`, with the secret as plaintext `key` or as `hash`. */
export type SeedApiKey = Omit<NewApiKey, 'hash' | 'prefix'> &
  (
    | {
        /** The plaintext secret; hashed (with the pepper, if any) and then forgotten. */
        key: string;
        hash?: undefined;
        /** Default: the first 13 characters of `key`. */
        prefix?: undefined;
      }
    | {
        key?: undefined;
        /** Hex SHA-256 (or HMAC-SHA-256 with the pepper) of the secret, as {@link hashApiKey} makes it. */
        hash: string;
        /** Shown to operators to tell keys apart. Default: `''`. */
        prefix?: string;
      }
  );

/**
 * A plain config object a KeyStore can start from, e.g. read from a JSON file.
 *
 * @example
 * const seed: KeyStoreSeed = {
 *   teams: [{ id: 'ml', name: 'ML', budgetUsd: 500 }],
 *   keys: [{ id: 'ci', name: 'CI', teamId: 'ml', key: process.env.CI_KEY!, rpm: 60 }],
 * };
 */
export interface KeyStoreSeed {
  /** Created first, so users and keys can reference them. */
  teams?: NewTeam[];
  /** Created second. */
  users?: NewUser[];
  /** Created last. */
  keys?: SeedApiKey[];
}

/** Options of {@link seedKeyStore} and {@link resolveSeed}. */
export interface SeedOptions {
  /** Pepper for HMAC-SHA-256 hashes of plaintext keys; must match the one `keyAuth` uses. Default: none (SHA-256). */
  pepper?: string;
}

/** A seed ready for the create methods: plaintext keys replaced by their hashes. */
export interface ResolvedSeed {
  teams: NewTeam[];
  users: NewUser[];
  keys: NewApiKey[];
}

/**
 * Checks the shape of `seed` and hashes its plaintext keys. The records themselves are
 * validated by the store when they are created.
 *
 * @throws KeyStoreError `invalid_field` naming the entry (`keys[2].key`).
 */
export function resolveSeed(seed: KeyStoreSeed, options: SeedOptions = {}): ResolvedSeed {
  const pepper = options.pepper;
  if (pepper !== undefined && (typeof pepper !== 'string' || pepper.length === 0)) {
    throw new TypeError('seedKeyStore: pepper must be a non-empty string');
  }
  if (typeof seed !== 'object' || seed === null || Array.isArray(seed)) {
    throw new KeyStoreError('invalid_field', 'seed', 'seed must be an object');
  }
  for (const field of Object.keys(seed)) {
    if (field !== 'teams' && field !== 'users' && field !== 'keys') {
      throw new KeyStoreError('invalid_field', field, `seed has an unknown field ${field}`);
    }
  }
  return {
    teams: entries(seed.teams, 'teams').map((team) => ({ ...team })),
    users: entries(seed.users, 'users').map((user) => ({ ...user })),
    keys: entries(seed.keys, 'keys').map((entry, index) => resolveKey(entry, index, pepper)),
  };
}

/**
 * Creates the seed's teams, users and keys in `store`, in that order. Stops at the first entry
 * the store refuses, re-throwing its {@link KeyStoreError} with the entry in `field`
 * (`users[1].teamId`); entries created before it stay.
 *
 * @example
 * await seedKeyStore(store, JSON.parse(await readFile('keys.json', 'utf8')), { pepper });
 */
export async function seedKeyStore(
  store: KeyStore,
  seed: KeyStoreSeed,
  options: SeedOptions = {},
): Promise<void> {
  const resolved = resolveSeed(seed, options);
  for (const [index, team] of resolved.teams.entries()) {
    await inEntry(`teams[${index}]`, () => store.createTeam(team));
  }
  for (const [index, user] of resolved.users.entries()) {
    await inEntry(`users[${index}]`, () => store.createUser(user));
  }
  for (const [index, key] of resolved.keys.entries()) {
    await inEntry(`keys[${index}]`, () => store.createKey(key));
  }
}

/** Runs `create`, naming `entry` in the field of a KeyStoreError it throws. */
async function inEntry<T>(entry: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (err) {
    throw withEntry(err, entry);
  }
}

/** `err` with `entry` prefixed to its field, when it is a KeyStoreError; `err` itself otherwise. */
export function withEntry(err: unknown, entry: string): unknown {
  if (!isKeyStoreError(err)) return err;
  const field = err.field === undefined ? entry : `${entry}.${err.field}`;
  return new KeyStoreError(err.code, field, `${entry}: ${err.message}`);
}

function entries<T>(list: T[] | undefined, name: string): T[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new KeyStoreError('invalid_field', name, `seed ${name} must be an array`);
  list.forEach((entry, index) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new KeyStoreError(
        'invalid_field',
        `${name}[${index}]`,
        `seed ${name}[${index}] must be an object`,
      );
    }
  });
  return list;
}

function resolveKey(entry: SeedApiKey, index: number, pepper: string | undefined): NewApiKey {
  const at = `keys[${index}]`;
  const { key, hash, prefix, ...fields } = entry;
  if (key !== undefined) {
    if (hash !== undefined || prefix !== undefined) {
      throw new KeyStoreError('invalid_field', `${at}.key`, `${at}: give key or hash (and prefix), not both`);
    }
    // No upper bound: only the fixed-size hash is kept (keyAuth itself reads at most 512 characters).
    if (typeof key !== 'string' || key.length === 0) {
      throw new KeyStoreError('invalid_field', `${at}.key`, `${at}: key must be a non-empty string`);
    }
    return { ...fields, hash: hashApiKey(key, pepper), prefix: displayPrefix(key) };
  }
  if (hash === undefined) {
    throw new KeyStoreError('invalid_field', `${at}.key`, `${at}: give the plaintext key or its hash`);
  }
  return { ...fields, hash, prefix: prefix ?? '' };
}
