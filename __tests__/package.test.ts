import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs `source` as a host project that has llmux installed (a link to this checkout's build). */
function runHost(fileName: string, source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'llmux-host-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'llmux'), 'dir');
    writeFileSync(join(dir, fileName), source);
    return execFileSync(process.execPath, [join(dir, fileName)], { cwd: dir, encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the published package', () => {
  it('has been built (npm test builds before jest)', () => {
    expect(existsSync(join(root, 'dist/lib/index.js'))).toBe(true);
    expect(existsSync(join(root, 'dist/lib/index.d.ts'))).toBe(true);
  });

  it('loads with require() from a CommonJS host', () => {
    const out = runHost(
      'host.cjs',
      `const llmux = require('llmux');
       const testing = require('llmux/testing');
       console.log(JSON.stringify([typeof llmux.llmux, typeof llmux.streamRelay, typeof llmux.LlmuxError, typeof testing.createMockUpstream]));`,
    );
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual([
      'function',
      'function',
      'function',
      'function',
    ]);
  });

  it('loads with import from an ESM host', () => {
    const out = runHost(
      'host.mjs',
      `import { llmux, bodyLimit } from 'llmux';
       import { createMockUpstream } from 'llmux/testing';
       console.log(JSON.stringify([typeof llmux, typeof bodyLimit, typeof createMockUpstream]));`,
    );
    expect(JSON.parse(out.trim())).toEqual(['function', 'function', 'function']);
  });
});
