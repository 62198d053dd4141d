// New API keys: a recognisable prefix and 32 random bytes, shown once and then kept only as a hash.
import { randomBytes } from 'node:crypto';

/** The prefix of every key llmux generates. */
export const KEY_PREFIX = 'sk-llmux-';

/** A new key: the plaintext (show it once) and the short prefix kept for display. */
export interface GeneratedKey {
  key: string;
  /** `sk-llmux-` plus the first 4 characters of the random part. */
  prefix: string;
}

/** Generates `sk-llmux-` + 32 random bytes in base64url (43 characters). */
export function generateApiKey(): GeneratedKey {
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, prefix: displayPrefix(key) };
}

/** The part of a key safe to show: its first 13 characters. */
export function displayPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 4);
}
