// The error a KeyStore throws for bad input: a stable `code` and the `field` at fault, so the
// management API can answer 400/404/409 naming the field without parsing a message.

/**
 * Stable codes of {@link KeyStoreError}:
 * - `invalid_field`: a value is missing, of the wrong type or out of range (also a `teamId` or
 *   `userId` that names no team or user, and an unknown field);
 * - `duplicate_id`: a record with the given `id` already exists;
 * - `duplicate_hash`: a key with the same hash already exists;
 * - `not_found`: an accounting operation named a record that does not exist (`admit` of an
 *   unknown `keyId`); the CRUD methods answer `undefined`/`false` instead of throwing;
 * - `in_use`: a team or user that keys or users still reference cannot be deleted.
 */
export type KeyStoreErrorCode = 'invalid_field' | 'duplicate_id' | 'duplicate_hash' | 'not_found' | 'in_use';

/**
 * Thrown (as a rejection) by KeyStore methods for input they refuse. Messages name the field
 * and the rule, never a secret or a hash.
 *
 * @example
 * try {
 *   await store.createKey({ name: 'ci', hash, prefix, rpm: 0 });
 * } catch (err) {
 *   if (err instanceof KeyStoreError && err.code === 'invalid_field') console.log(err.field); // 'rpm'
 * }
 */
export class KeyStoreError extends Error {
  override readonly name = 'KeyStoreError';
  /** Stable machine-readable code; match on it, never on the message. */
  readonly code: KeyStoreErrorCode;
  /** The input field at fault (`rpm`, `teamId`, `keys[2].hash` in a seed), when there is one. */
  readonly field: string | undefined;

  constructor(code: KeyStoreErrorCode, field: string | undefined, message: string) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

/** True when `value` is a {@link KeyStoreError} (also across duplicated package copies). */
export function isKeyStoreError(value: unknown): value is KeyStoreError {
  return value instanceof KeyStoreError || (value instanceof Error && value.name === 'KeyStoreError');
}
