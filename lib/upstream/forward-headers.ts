// Which client headers may reach an upstream: an allow-list, never a deny-list, so a client's own
// credentials, organisation or project, or a forged X-Forwarded-For never travel next to the
// relay's key.
import type { OptionReader } from '../options.js';

/** Headers that carry a credential: never forwarded, whatever the host configures. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'x-api-key',
  'cookie',
  'proxy-authorization',
  'api-key',
]);

/**
 * Checks a `forwardHeaders` option: lower-cased names, no credential among them; undefined when
 * absent (each protocol then forwards its own: `openai-beta`; `anthropic-version`, `anthropic-beta`).
 */
export function resolveForwardHeaders(
  read: OptionReader,
  value: readonly string[] | undefined,
): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((name) => typeof name === 'string' && name.length > 0)) {
    read.fail('forwardHeaders', 'an array of header names', value);
  }
  const names = value.map((name) => name.toLowerCase());
  for (const name of names) {
    if (CREDENTIAL_HEADERS.has(name)) read.fail('forwardHeaders', 'free of credential headers', name);
  }
  return Object.freeze(names);
}
