// Masks anything that looks like a credential before text reaches a log, a metric or a client.

// Built once: `sk-…`-style keys, `Bearer …` tokens and `x-api-key: …` pairs.
const SECRET_PATTERN =
  /\b(sk-[A-Za-z0-9_-]{6,}|Bearer\s+[A-Za-z0-9._~+/=-]{6,}|api[_-]?key["'=:\s]+[A-Za-z0-9._-]{6,})/gi;

/** Replaces credentials in `text` with `[redacted]`. */
export function redactSecrets(text: string): string {
  return text.replace(SECRET_PATTERN, '[redacted]');
}

/** `sk-abcd…wxyz` → `sk-a…wxyz`: enough for an operator to tell keys apart, useless to an attacker. */
export function maskKey(key: string): string {
  if (key.length <= 8) return '****';
  return `${key.slice(0, 4)}…${key.slice(-4)}`;
}
