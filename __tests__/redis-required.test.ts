// `npm test` without Redis: a Redis-backed test file fails at once with one message saying how to
// start Redis or skip on purpose, and LLMUX_SKIP_REDIS=1 skips it and says so. Runs jest on such a
// file in a child process, against a port nothing listens on.
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closedPort } from './support/http.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The bound on a run that finds no Redis: it must neither hang nor wait for timeouts. */
const BOUND_MS = 30_000;

/** Runs jest on one Redis-backed file as `npm run jest` does; kills it after {@link BOUND_MS}. */
async function jestOn(file: string, env: Record<string, string>) {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TZ: 'America/New_York', ...env };
  delete childEnv.JEST_WORKER_ID;
  if (env.LLMUX_SKIP_REDIS === undefined) delete childEnv.LLMUX_SKIP_REDIS;
  const child = spawn(
    process.execPath,
    [
      '--experimental-vm-modules',
      '--no-warnings=ExperimentalWarning',
      'node_modules/jest/bin/jest.js',
      '--ci',
      file,
    ],
    { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const started = performance.now();
  const killer = setTimeout(() => child.kill('SIGKILL'), BOUND_MS);
  const code = await new Promise<number | null>((done) => child.once('close', done));
  clearTimeout(killer);
  return { code, output, elapsedMs: performance.now() - started };
}

describe('a Redis-backed test file without Redis', () => {
  it('fails at once, with one message saying how to start Redis or skip on purpose', async () => {
    const port = await closedPort();
    const { code, output, elapsedMs } = await jestOn('__tests__/multi-instance.test.ts', {
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    expect(code).toBe(1);
    expect(elapsedMs).toBeLessThan(BOUND_MS);
    expect(output.match(/Redis is required at/g)).toHaveLength(1);
    expect(output).toContain(
      `Redis is required at redis://127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}): start one with ` +
        "`redis-server --daemonize yes --port 6379 --save ''`",
    );
    expect(output).toContain('or set LLMUX_SKIP_REDIS=1 to skip the Redis suites on purpose');
    expect(output).not.toContain('did not exit');
  });

  it('is skipped, and says so, under LLMUX_SKIP_REDIS=1', async () => {
    const port = await closedPort();
    const { code, output } = await jestOn('__tests__/multi-instance.test.ts', {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      LLMUX_SKIP_REDIS: '1',
    });
    expect(code).toBe(0);
    expect(output).toContain(
      'LLMUX_SKIP_REDIS=1: the Redis suites of multi-instance.test.ts are skipped on purpose',
    );
    expect(output).toMatch(/Tests:\s+\d+ skipped, \d+ total/);
    expect(output).not.toContain('did not exit');
  });
});
