// Model allow-lists: `*` matches any run of characters, everything else is literal. Matching
// walks the pattern in place, so no regexp is built (or cached) and no character is special.

/**
 * Whether `model` passes the allow-list `patterns`. An absent or empty list allows every model
 * (and a request without a model); a non-empty list allows only the models one of its patterns
 * matches, so a request without a model is refused by it.
 *
 * @example
 * modelAllowed('gpt-4o-mini', ['gpt-4o*']); // true
 * modelAllowed('gpt-4xo', ['gpt-4.o']);     // false: `.` is literal
 */
export function modelAllowed(model: string | undefined, patterns: readonly string[] | undefined): boolean {
  if (patterns === undefined || patterns.length === 0) return true;
  if (model === undefined) return false;
  for (const pattern of patterns) {
    if (globMatches(pattern, model)) return true;
  }
  return false;
}

/**
 * Whether the whole of `text` matches `pattern`, where `*` matches any run of characters
 * (the empty run too) and every other character matches only itself. Linear in practice:
 * the literal runs between stars are found leftmost-first, which is exact for star-only globs.
 */
export function globMatches(pattern: string, text: string): boolean {
  const firstStar = pattern.indexOf('*');
  if (firstStar === -1) return pattern === text;
  const lastStar = pattern.lastIndexOf('*');
  const suffixLength = pattern.length - lastStar - 1;
  // The literal head and tail must fit without overlapping.
  if (firstStar + suffixLength > text.length) return false;
  if (!regionEquals(text, 0, pattern, 0, firstStar)) return false;
  const end = text.length - suffixLength;
  if (!regionEquals(text, end, pattern, lastStar + 1, suffixLength)) return false;
  let textAt = firstStar;
  let patternAt = firstStar + 1;
  while (patternAt < lastStar) {
    const nextStar = pattern.indexOf('*', patternAt);
    const length = nextStar - patternAt;
    if (length > 0) {
      const found = indexOfRegion(text, textAt, end, pattern, patternAt, length);
      if (found === -1) return false;
      textAt = found + length;
    }
    patternAt = nextStar + 1;
  }
  return true;
}

function regionEquals(
  text: string,
  textAt: number,
  pattern: string,
  patternAt: number,
  length: number,
): boolean {
  for (let i = 0; i < length; i++) {
    if (text.charCodeAt(textAt + i) !== pattern.charCodeAt(patternAt + i)) return false;
  }
  return true;
}

/** The first index in `text[from, end)` where `pattern[patternAt, patternAt + length)` occurs, or -1. */
function indexOfRegion(
  text: string,
  from: number,
  end: number,
  pattern: string,
  patternAt: number,
  length: number,
): number {
  for (let at = from; at + length <= end; at++) {
    if (regionEquals(text, at, pattern, patternAt, length)) return at;
  }
  return -1;
}
