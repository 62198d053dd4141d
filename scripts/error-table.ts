// Renders README's error table from the error catalog, so the two never drift:
// `npm run docs:errors` rewrites the table; a test fails when README is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CATALOG, ERROR_CODES, type ErrorSpec } from '../lib/errors/catalog.js';

export const TABLE_BEGIN =
  '<!-- errors:begin (generated from lib/errors/catalog.ts by npm run docs:errors) -->';
export const TABLE_END = '<!-- errors:end -->';

/** The row of errors the relay passes on from an upstream that refused the request itself. */
const RELAYED_ROW =
  "| 400/403/404/422 | the upstream's | the upstream's | the upstream refused the request (a model the relay's project cannot use, a bad parameter); its message is relayed, credentials redacted. Any 4xx but 401/408/413/429 and a context-length 400 keeps its status |";

/** The table, sorted by status, then in catalog order. */
export function renderErrorTable(): string {
  const rows = ERROR_CODES.map((code) => [code, ERROR_CATALOG[code] as ErrorSpec] as const)
    .filter(([, spec]) => spec.sent !== false)
    .sort((a, b) => a[1].status - b[1].status);
  const lines = ['| status | type | code | when |', '|---|---|---|---|'];
  let relayedWritten = false;
  for (const [code, spec] of rows) {
    if (!relayedWritten && spec.status > 400) {
      lines.push(RELAYED_ROW);
      relayedWritten = true;
    }
    lines.push(`| ${spec.status} | \`${spec.type}\` | \`${code}\` | ${spec.when} |`);
  }
  return [TABLE_BEGIN, ...lines, TABLE_END].join('\n');
}

/** README with its table replaced by the rendered one. */
export function withErrorTable(readme: string): string {
  const begin = readme.indexOf(TABLE_BEGIN);
  const end = readme.indexOf(TABLE_END);
  if (begin === -1 || end === -1) throw new Error('README has no generated error table markers');
  return readme.slice(0, begin) + renderErrorTable() + readme.slice(end + TABLE_END.length);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = new URL('../README.md', import.meta.url);
  writeFileSync(path, withErrorTable(readFileSync(path, 'utf8')));
}
