// Hashing and constant-time comparison of API keys: only hashes are ever stored or compared.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The stored form of a key: hex SHA-256, or HMAC-SHA-256 with `pepper` when the host supplies
 * one (so a leaked store cannot be checked against guessed keys without the pepper).
 */
export function hashApiKey(key: string, pepper?: string): string {
  return (pepper === undefined ? createHash('sha256') : createHmac('sha256', pepper))
    .update(key)
    .digest('hex');
}

/** Compares two hex digests in constant time. */
export function digestsEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

/**
 * The presented key from `Authorization: Bearer …` or `x-api-key`, or undefined. Never throws,
 * whatever the header holds; keys longer than 512 characters are refused unread.
 */
export function readPresentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string' && authorization.length <= 519) {
    if (authorization.length > 7 && authorization.slice(0, 7).toLowerCase() === 'bearer ') {
      const key = authorization.slice(7).trim();
      return key.length > 0 ? key : undefined;
    }
  }
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.length <= 512) {
    const key = apiKey.trim();
    return key.length > 0 ? key : undefined;
  }
  return undefined;
}
