// Reading a parsed request body without trusting its shape: every helper accepts anything and
// falls back, since the mock must answer whatever a client sends.

/** `value[name]` when `value` is an object, else undefined. */
export function fieldOf(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

/** The request's `model`, or `fallback` when it names none. */
export function modelOf(body: unknown, fallback: string): string {
  const model = fieldOf(body, 'model');
  return typeof model === 'string' ? model : fallback;
}

/** A non-negative integer field, or undefined when absent or not one. */
export function countField(body: unknown, name: string): number | undefined {
  const value = fieldOf(body, name);
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

function isWhitespace(code: number): boolean {
  return (
    code === 32 ||
    (code >= 9 && code <= 13) ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/** Whitespace-separated words, counted without allocating: the mock's deterministic token count. */
export function countWords(text: string): number {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    if (isWhitespace(text.charCodeAt(i))) inWord = false;
    else if (!inWord) {
      inWord = true;
      words++;
    }
  }
  return words;
}
