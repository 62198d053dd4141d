// API-key authentication: the presented key is hashed and matched against stored hashes in
// constant time; every failure gets the same 401, so the answer reveals nothing.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ensureContext } from '../context.js';
import { errors, sendError } from '../errors.js';
import { digestsEqual, hashApiKey, readPresentedKey } from '../keys/hash.js';

type Next = (err?: unknown) => void;

/** One accepted key: give the plaintext `key` or its `hash` (see {@link hashApiKey}). */
export interface StaticKey {
  /** Identity recorded in the context, logs and metrics; never the secret. */
  id: string;
  /** The plaintext key; hashed at construction and not kept. */
  key?: string;
  /** The key's hash (hex SHA-256, or HMAC-SHA-256 with `pepper`). */
  hash?: string;
}

/** Options of {@link keyAuth}. */
export interface KeyAuthOptions {
  /** The accepted keys. */
  keys: readonly StaticKey[];
  /** Secret for HMAC-SHA-256 key hashes. Default: none (plain SHA-256). */
  pepper?: string;
}

/**
 * Accepts requests carrying one of `keys` in `Authorization: Bearer …` or `x-api-key`, and sets
 * `keyId` in the context. A missing, malformed or unknown key gets 401 `invalid_api_key` with one
 * message for all cases. Keys are held only as hashes.
 *
 * @example
 * app.use('/v1', keyAuth({ keys: [{ id: 'demo', key: process.env.LLMUX_DEMO_KEY! }] }));
 */
export function keyAuth(options: KeyAuthOptions) {
  if (typeof options !== 'object' || options === null || !Array.isArray(options.keys)) {
    throw new TypeError('keyAuth: keys must be an array');
  }
  const pepper = options.pepper;
  if (pepper !== undefined && (typeof pepper !== 'string' || pepper.length === 0)) {
    throw new TypeError('keyAuth: pepper must be a non-empty string');
  }
  const byHash = new Map<string, string>();
  for (const entry of options.keys) {
    if (typeof entry?.id !== 'string' || entry.id.length === 0) {
      throw new TypeError('keyAuth: every key needs a non-empty id');
    }
    const hash =
      entry.hash ??
      (typeof entry.key === 'string' && entry.key.length > 0 ? hashApiKey(entry.key, pepper) : undefined);
    if (hash === undefined || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new TypeError(`keyAuth: key ${entry.id} needs a non-empty key or a 64-hex-digit hash`);
    }
    byHash.set(hash, entry.id);
  }
  return function llmuxKeyAuth(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const ctx = ensureContext(req, res);
    const presented = readPresentedKey(req.headers);
    if (presented !== undefined) {
      const digest = hashApiKey(presented, pepper);
      // Every stored hash is compared, each in constant time: the answer's timing says nothing.
      for (const [hash, id] of byHash) {
        if (digestsEqual(hash, digest)) {
          ctx.keyId = id;
          next();
          return;
        }
      }
    }
    ctx.errorCode = 'invalid_api_key';
    sendError(res, errors.invalidApiKey());
  };
}
