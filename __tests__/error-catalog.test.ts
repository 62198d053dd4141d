import { describe, expect, it } from '@jest/globals';
import express from 'express';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import {
  ERROR_CATALOG,
  ERROR_CODES,
  KNOWN_ERROR_CODES,
  LlmuxError,
  llmuxError,
  sendError,
  type LlmuxErrorCode,
} from '../lib/index.js';
import { renderErrorTable } from '../scripts/error-table.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourcesUnder(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const librarySources = sourcesUnder(join(root, 'lib')).map((path) => ({
  path: path.slice(root.length + 1),
  text: readFileSync(path, 'utf8'),
}));

/** The rows of README's error table whose code is one of llmux's own (backticked). */
function readmeErrorRows(): { status: string; type: string; code: string }[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Errors'));
  const rows: { status: string; type: string; code: string }[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    const match = /^`([a-z_]+)`$/.exec(cells[3] ?? '');
    if (match === null || !/^\d{3}$/.test(cells[1] ?? '')) continue;
    rows.push({ status: cells[1]!, type: cells[2]!.replaceAll('`', ''), code: match[1]! });
  }
  return rows;
}

describe('the error catalog', () => {
  it.each(ERROR_CODES.map((code) => [code]))('%s is made with its catalogued status and type', (code) => {
    const error = llmuxError(code);
    expect(error.status).toBe(ERROR_CATALOG[code].status);
    expect(error.type).toBe(ERROR_CATALOG[code].type);
    expect(error.code).toBe(code);
    expect(error.message.length).toBeGreaterThan(0);
  });

  it('lists every code the README documents, with the same status and type', () => {
    const rows = readmeErrorRows();
    expect(rows.length).toBeGreaterThan(20);
    for (const row of rows) {
      const spec = ERROR_CATALOG[row.code as LlmuxErrorCode];
      expect({ code: row.code, known: spec !== undefined }).toEqual({ code: row.code, known: true });
      expect({ code: row.code, status: row.status, type: row.type }).toEqual({
        code: row.code,
        status: String(spec.status),
        type: spec.type,
      });
    }
  });

  it('is what README shows: its error table is the one rendered from the catalog (npm run docs:errors)', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readme).toContain(renderErrorTable());
  });

  it('is documented whole in the README: every code llmux sends has a row', () => {
    const documented = new Set(readmeErrorRows().map((row) => row.code));
    const sent = ERROR_CODES.filter((code) => (ERROR_CATALOG[code] as { sent?: false }).sent !== false);
    expect(sent.filter((code) => !documented.has(code))).toEqual([]);
  });

  it('is the only place llmux builds its errors: no LlmuxError is constructed elsewhere in lib/', () => {
    const builders = librarySources
      .filter((file) => !file.path.startsWith('lib/errors/') && file.text.includes('new LlmuxError('))
      .map((file) => file.path);
    expect(builders).toEqual([]);
  });

  it('holds every code the library records on a request context', () => {
    const recorded = new Set<string>();
    for (const file of librarySources) {
      for (const match of file.text.matchAll(/errorCode = '([a-z_]+)'/g)) recorded.add(match[1]!);
    }
    expect(recorded.size).toBeGreaterThan(3);
    expect([...recorded].filter((code) => !Object.hasOwn(ERROR_CATALOG, code))).toEqual([]);
  });

  it('is what the metrics label by name', () => {
    expect([...KNOWN_ERROR_CODES]).toEqual([...ERROR_CODES]);
  });

  it('refuses a status its code is never sent with', () => {
    expect(() => llmuxError('invalid_api_key', { status: 400 })).toThrow(TypeError);
    expect(llmuxError('invalid_request', { status: 422 }).status).toBe(422);
  });
});

describe('x-should-retry', () => {
  async function headersOf(error: LlmuxError) {
    const app = express();
    app.get('/', (_req, res) => sendError(res, error));
    return (await request(app).get('/')).headers;
  }

  it.each<[LlmuxErrorCode]>([['insufficient_quota'], ['daily_quota_exceeded'], ['too_many_auth_failures']])(
    'is false on %s, where waiting cannot help soon',
    async (code) => {
      expect((await headersOf(llmuxError(code)))['x-should-retry']).toBe('false');
    },
  );

  it('is not sent on errors a client may retry, nor on client errors SDKs never retry', async () => {
    expect((await headersOf(llmuxError('rate_limited')))['x-should-retry']).toBeUndefined();
    expect((await headersOf(llmuxError('upstream_timeout')))['x-should-retry']).toBeUndefined();
    expect((await headersOf(llmuxError('invalid_api_key')))['x-should-retry']).toBeUndefined();
  });

  it('follows an error that says retrying cannot help, whatever its code', async () => {
    const headers = await headersOf(llmuxError('rate_limited', { shouldRetry: false }));
    expect(headers['x-should-retry']).toBe('false');
  });
});
