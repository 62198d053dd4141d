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

/** A host project that has llmux installed (a link to this checkout's build) and `files`. */
function withHost<T>(files: Record<string, string>, use: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'llmux-host-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'llmux'), 'dir');
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `source` as a host project that has llmux installed. */
function runHost(fileName: string, source: string): string {
  return withHost({ [fileName]: source }, (dir) =>
    execFileSync(process.execPath, [join(dir, fileName)], { cwd: dir, encoding: 'utf8' }),
  );
}

/** A CommonJS host's package.json. */
const CJS_PACKAGE = JSON.stringify({ name: 'host', private: true, type: 'commonjs' });
/** This checkout's tools, as a host would have its own. */
const TSC = join(root, 'node_modules/typescript/bin/tsc');
const JEST = join(root, 'node_modules/jest/bin/jest.js');

/** A host tsconfig: `module` as given, types from this checkout (the host installs its own). */
function hostTsconfig(module: string, files: string[]): string {
  return JSON.stringify({
    compilerOptions: {
      module,
      target: 'ES2022',
      strict: true,
      skipLibCheck: true,
      outDir: 'out',
      types: ['node'],
      typeRoots: [join(root, 'node_modules/@types')],
    },
    files,
  });
}

/** Compiles a host with this checkout's tsc; the compiler's output, '' when it succeeds. */
function compileHost(dir: string): string {
  try {
    execFileSync(process.execPath, [TSC, '-p', dir], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    return '';
  } catch (err) {
    return String((err as { stdout?: string }).stdout);
  }
}

/** What the README's "CommonJS hosts" says a TypeScript host writes: types and values, statically. */
const TS_HOST = `import { llmux, LlmuxError, isLlmuxError, type LlmuxOptions } from 'llmux';
import { createMockUpstream } from 'llmux/testing';

const options: LlmuxOptions = { upstream: 'http://127.0.0.1:1/v1', auth: false };
const gateway = llmux(options);
const error = new LlmuxError('slow down', { status: 429, type: 'rate_limit_error', code: 'rate_limited' });
console.log(JSON.stringify([typeof gateway, isLlmuxError(error), typeof createMockUpstream, typeof module]));
void gateway.close();
`;

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

describe('a CommonJS host written in TypeScript', () => {
  it('imports llmux types and values statically with module nodenext, and runs the output on Node', () => {
    const files = {
      'package.json': CJS_PACKAGE,
      'tsconfig.json': hostTsconfig('nodenext', ['host.ts']),
      'host.ts': TS_HOST,
    };
    withHost(files, (dir) => {
      expect(compileHost(dir)).toBe('');
      // Compiled to require(): Node >= 20.19 loads the ES module synchronously.
      expect(readFileSync(join(dir, 'out/host.js'), 'utf8')).toContain('require("llmux")');
      const out = execFileSync(process.execPath, [join(dir, 'out/host.js')], { cwd: dir, encoding: 'utf8' });
      expect(JSON.parse(out)).toEqual(['function', true, 'function', 'object']);
    });
  });

  it('needs a dynamic import with module node16, where static imports of an ES module are errors', () => {
    const node16Host = `import type { LlmuxOptions } from 'llmux' with { 'resolution-mode': 'import' };

async function main(): Promise<void> {
  const { llmux } = await import('llmux');
  const options: LlmuxOptions = { upstream: 'http://127.0.0.1:1/v1', auth: false };
  const gateway = llmux(options);
  console.log(JSON.stringify([typeof gateway, typeof module]));
  await gateway.close();
}
void main();
`;
    withHost(
      {
        'package.json': CJS_PACKAGE,
        'tsconfig.json': hostTsconfig('node16', ['host.ts', 'dynamic.ts']),
        'host.ts': TS_HOST,
        'dynamic.ts': node16Host,
      },
      (dir) => {
        const errors = compileHost(dir).match(/^[\w.]+\(\d+,\d+\): error TS\d+/gm);
        expect(errors).toEqual([
          expect.stringMatching(/^host\.ts\(1,\d+\): error TS1479$/),
          expect.stringMatching(/^host\.ts\(2,\d+\): error TS1479$/),
        ]);
        const out = execFileSync(process.execPath, [join(dir, 'out/dynamic.js')], {
          cwd: dir,
          encoding: 'utf8',
        });
        expect(JSON.parse(out)).toEqual(['function', 'object']);
      },
    );
  });
});

describe('Jest in a CommonJS host', () => {
  it('loads llmux through import under --experimental-vm-modules, never through require()', () => {
    const files = {
      'package.json': CJS_PACKAGE,
      'jest.config.json': JSON.stringify({
        testEnvironment: 'node',
        testMatch: ['**/*.test.?(m)[jt]s'],
        extensionsToTreatAsEsm: ['.ts'],
        transform: {
          '^.+\\.ts$': [
            join(root, 'node_modules/ts-jest/dist/index.js'),
            {
              useESM: true,
              // The README's setup, less type checking: this bare host has no @types/jest of its own.
              diagnostics: false,
              tsconfig: { module: 'es2022', moduleResolution: 'bundler', esModuleInterop: true },
            },
          ],
        },
      }),
      'import.test.mjs': `import { llmux } from 'llmux';
test('import', () => expect(typeof llmux).toBe('function'));`,
      'typescript.test.ts': `import { llmux, type LlmuxOptions } from 'llmux';
const options: LlmuxOptions = { upstream: 'http://127.0.0.1:1/v1', auth: false };
test('import from TypeScript', async () => {
  const gateway = llmux(options);
  expect(typeof gateway).toBe('function');
  await gateway.close();
});`,
      'dynamic-import.test.js': `test('import()', async () => expect(typeof (await import('llmux')).llmux).toBe('function'));`,
      'require.test.js': `test('require', () => expect(typeof require('llmux').llmux).toBe('function'));`,
    };
    const results = withHost(files, (dir) => {
      let out: string;
      try {
        out = execFileSync(
          process.execPath,
          ['--experimental-vm-modules', '--no-warnings=ExperimentalWarning', JEST, '--ci', '--json'],
          { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 },
        );
      } catch (err) {
        // One file fails on purpose: jest exits 1 and still prints its JSON report.
        out = String((err as { stdout?: string }).stdout);
      }
      const report = JSON.parse(out) as { testResults: { name: string; status: string; message: string }[] };
      return Object.fromEntries(
        report.testResults.map((file) => [
          file.name.slice(dir.length + 1),
          { status: file.status, message: file.message },
        ]),
      );
    });
    expect(results['import.test.mjs']?.status).toBe('passed');
    expect(results['typescript.test.ts']?.status).toBe('passed');
    expect(results['dynamic-import.test.js']?.status).toBe('passed');
    // Jest's own module loader cannot require() an ES module, whatever Node can (Jest 29 and 30).
    expect(results['require.test.js']).toEqual({
      status: 'failed',
      message: expect.stringContaining('Must use import to load ES Module'),
    });
  });
});
