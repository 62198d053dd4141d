// The library as its users run it: the compiled JavaScript in dist/ (`npm run bench` builds it
// first), not the TypeScript sources through tsx, whose transform adds work users never pay.
import { existsSync } from 'node:fs';
import type * as Llmux from '../lib/index.js';
import type * as LlmuxTesting from '../lib/testing/index.js';

const DIST = new URL('../dist/lib/', import.meta.url);
if (!existsSync(new URL('index.js', DIST))) {
  throw new Error('bench: dist/ is missing; run `npm run build` first (npm run bench does)');
}

/** `llmux`, compiled. */
export const lib = (await import(new URL('index.js', DIST).href)) as typeof Llmux;
/** `llmux/testing`, compiled. */
export const testing = (await import(new URL('testing/index.js', DIST).href)) as typeof LlmuxTesting;
