import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
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

  it('builds dist/ in `prepare`, which npm runs for `npm pack`, `npm publish` and git installs', () => {
    // `prepack` alone would not do: npm runs only `prepare` when it packs a git dependency.
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(manifest.scripts.prepare).toBe('npm run build');
  });

  it('packs the built code, the licence and the README', () => {
    // --ignore-scripts: `npm test` built dist/ already; `prepare` would only build it again.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
    const [packed] = JSON.parse(out) as { files: { path: string }[] }[];
    const paths = packed!.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining(['dist/lib/index.js', 'dist/lib/index.d.ts', 'LICENSE', 'README.md']),
    );
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(
      /^MIT License\n\nCopyright \(c\) 2026 llmux contributors\n/,
    );
  });
});
