// The example gateway as `npm start` runs it, in its own process: where it listens, how it fails to
// start (one line, exit code 1), and every curl line it prints or README.md shows, run as written.
import { afterEach, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADMIN_KEY = 'admin-key-for-curl-tests-0123456789';
/** Bound of a start, and of a failed start's exit. */
const START_MS = 15_000;
/** Bound of one shell script; each curl in it has its own `--max-time`. */
const SHELL_MS = 30_000;
/** How long a live feed is watched before it is stopped. */
const LIVE_SECONDS = 3;
/** Bound of a test that runs curl lines, one after the other. */
const CURL_TEST_MS = 90_000;

/** The environment of a user who set nothing of ours but `extra` (and no usage log in the repo). */
function gatewayEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name === 'HOST' || name === 'PORT' || name === 'REDIS_URL' || name.startsWith('LLMUX_'))
      delete env[name];
  }
  return { ...env, LLMUX_USAGE_LOG: '', ...extra };
}

function spawnGateway(env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', 'examples/gateway.ts'], {
    cwd: root,
    env: gatewayEnv(env),
  });
}

/** Runs the gateway until it exits by itself (or is killed after {@link START_MS}). */
async function runToExit(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawnGateway(env);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => child.kill('SIGKILL'), START_MS);
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  clearTimeout(killer);
  return { code, stderr };
}

const running: ChildProcessWithoutNullStreams[] = [];
afterEach(async () => {
  await Promise.all(
    running.splice(0).map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once('exit', () => done());
          child.kill('SIGTERM');
        }),
    ),
  );
});

/** Starts the gateway on a free port and resolves with its banner, once printed whole. */
async function startGateway(env: Record<string, string>): Promise<{ banner: string; port: number }> {
  const child = spawnGateway({ PORT: '0', ...env });
  running.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const banner = await new Promise<string>((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no banner within ${START_MS} ms: ${stdout}${stderr}`)),
      START_MS,
    );
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('Ctrl-C')) {
        clearTimeout(timer);
        done(stdout);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the gateway exited (${code}) before its banner: ${stderr}`));
    });
  });
  const port = Number(/http:\/\/[^/\s]+:(\d+)\//.exec(banner)?.[1]);
  return { banner, port };
}

/** The `curl` commands of `text`, each with its continuation lines (ending in `\`). */
function curlCommands(text: string): string[] {
  const commands: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*curl\s/.test(lines[i]!)) continue;
    let command = lines[i]!.trim();
    while (command.endsWith('\\') && i + 1 < lines.length) command += `\n${lines[++i]}`;
    commands.push(command);
  }
  return commands;
}

interface ShellRun {
  code: number | null;
  stdout: string;
  /** The HTTP status of every curl the script ran, in order. */
  statuses: string[];
  stderr: string;
}

/**
 * Runs `script` with bash as a user's shell would, with `env` exported. Every `curl` in it (in
 * `$(…)` too) runs with `--fail --max-time` (10 s, or `maxTimeSeconds`) and reports its status.
 */
async function runShell(script: string, env: Record<string, string>, maxTimeSeconds = 10): Promise<ShellRun> {
  const prelude = [
    'set -e -o pipefail',
    `curl() { command curl --fail --silent --show-error --max-time ${maxTimeSeconds} --write-out '%{stderr}HTTP %{http_code}\\n' "$@"; }`,
  ].join('\n');
  // Stdin closed: bash reads ~/.bashrc when its stdin is a socket, as Node's pipes are.
  const shell = spawn('bash', ['-c', `${prelude}\n${script}`], {
    env: gatewayEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  shell.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  shell.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => shell.kill('SIGKILL'), SHELL_MS);
  const code = await new Promise<number | null>((done) => shell.once('close', done));
  clearTimeout(killer);
  const statuses = [...stderr.matchAll(/^HTTP (\d{3})$/gm)].map((match) => match[1]!);
  return { code, stdout, statuses, stderr };
}

/** Runs one curl command as printed; a live feed runs until it is stopped, here by `--max-time`. */
async function expectToRun(command: string, env: Record<string, string>): Promise<void> {
  if (command.includes('/llmux/live')) {
    const run = await runShell(command, env, LIVE_SECONDS);
    expect({ command, code: run.code, statuses: run.statuses }).toEqual({
      command,
      code: 28,
      statuses: ['200'],
    });
    expect(run.stdout).toContain('event: snapshot');
    return;
  }
  const run = await runShell(command, env);
  expect({ command, code: run.code, statuses: run.statuses, stderr: run.stderr }).toEqual({
    command,
    code: 0,
    statuses: [expect.stringMatching(/^2\d\d$/)],
    stderr: expect.stringMatching(/^HTTP 2\d\d\n$/),
  });
}

/** Resolves to whether a TCP connection to `host:port` is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

describe('the example gateway process', () => {
  it('listens on 127.0.0.1 by default and says how to expose it', async () => {
    const { banner, port } = await startGateway({});
    expect(banner).toContain(`listening on http://127.0.0.1:${port},`);
    expect(banner).toMatch(/Only this machine can reach it\. To expose it, .*HOST=0\.0\.0\.0/);
    expect(await accepts('127.0.0.1', port)).toBe(true);
    // Linux routes all of 127/8 to loopback: a wildcard bind would accept here, 127.0.0.1 does not.
    if (process.platform === 'linux') expect(await accepts('127.0.0.2', port)).toBe(false);
  });

  it('listens where HOST says', async () => {
    const { banner, port } = await startGateway({ HOST: '0.0.0.0' });
    expect(banner).toContain(`listening on every interface, port ${port},`);
    if (process.platform === 'linux') expect(await accepts('127.0.0.2', port)).toBe(true);
  });

  it('exits 1 with one line, no stack, when the port is taken', async () => {
    const holder: Server = createServer();
    await new Promise<void>((done) => holder.listen(0, '127.0.0.1', done));
    const port = (holder.address() as AddressInfo).port;
    try {
      const { code, stderr } = await runToExit({ PORT: String(port) });
      expect(code).toBe(1);
      expect(stderr).toBe(
        `llmux example gateway: port ${port} is already in use on 127.0.0.1: stop what holds it, or choose another port (PORT=8081 npm start)\n`,
      );
    } finally {
      await new Promise((done) => holder.close(done));
    }
  });

  it('exits 1 with one line, no stack, when REDIS_URL names a Redis that does not answer', async () => {
    const { code, stderr } = await runToExit({ PORT: '0', REDIS_URL: 'redis://:hunter2@127.0.0.1:1' });
    expect(code).toBe(1);
    expect(stderr.split('\n')).toEqual([expect.any(String), '']);
    expect(stderr).toMatch(
      /^llmux example gateway: REDIS_URL is set but Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1 does not answer .*unset REDIS_URL/,
    );
    expect(stderr).not.toContain('hunter2');
  });
});

describe('every curl line of the banner runs as printed', () => {
  it(
    'with LLMUX_ADMIN_KEY set, once the user exported it',
    async () => {
      const { banner } = await startGateway({ LLMUX_ADMIN_KEY: ADMIN_KEY });
      expect(banner).toContain('export LLMUX_ADMIN_KEY=');
      const commands = curlCommands(banner);
      expect(
        commands
          .filter((command) => command.includes('$LLMUX_ADMIN_KEY'))
          .map((command) => /http:\S+/.exec(command)?.[0]),
      ).toEqual([
        expect.stringMatching(/\/llmux\/stats$/),
        expect.stringMatching(/\/llmux\/live$/),
        expect.stringMatching(/\/admin\/keys$/),
      ]);
      expect(commands).toHaveLength(6);
      for (const command of commands) await expectToRun(command, { LLMUX_ADMIN_KEY: ADMIN_KEY });
    },
    CURL_TEST_MS,
  );

  it(
    'without LLMUX_ADMIN_KEY',
    async () => {
      const { banner } = await startGateway({});
      const commands = curlCommands(banner);
      expect(commands).toHaveLength(5);
      for (const command of commands) await expectToRun(command, {});
    },
    CURL_TEST_MS,
  );
});

describe('the README', () => {
  it(
    'runs each shell block that talks to the example gateway as written (PORT aside)',
    async () => {
      const { port } = await startGateway({ LLMUX_ADMIN_KEY: ADMIN_KEY });
      const readme = readFileSync(join(root, 'README.md'), 'utf8');
      const blocks = [...readme.matchAll(/^```(?:sh|bash)\n([\s\S]*?)^```$/gm)]
        .map((match) => match[1]!)
        .filter((block) => /^\s*curl\s/m.test(block));
      expect(blocks.length).toBeGreaterThanOrEqual(2);
      expect(readme).not.toMatch(/^\s*\/\/.*\bcurl\s/m);
      for (const block of blocks) {
        expect(block).toContain('localhost:8080');
        // A user who started the gateway with PORT=<port> reads 8080 as that port.
        const script = block.replaceAll('localhost:8080', `127.0.0.1:${port}`);
        const live = block.includes('/llmux/live');
        const run = await runShell(script, { LLMUX_ADMIN_KEY: ADMIN_KEY }, live ? LIVE_SECONDS : 10);
        const curls = curlCommands(block).length;
        // A live feed ends only when stopped: here by --max-time, which curl reports as error 28.
        const stopped = live ? /^curl: \(28\) .*\n/m : /^$/;
        const stderr = run.stderr.replace(/^HTTP 2\d\d\n/gm, '').replace(stopped, '');
        expect({ block, code: run.code, stderr }).toEqual({ block, code: live ? 28 : 0, stderr: '' });
        expect(run.statuses).toHaveLength(curls);
        expect(run.statuses.every((status) => /^2\d\d$/.test(status))).toBe(true);
      }
    },
    CURL_TEST_MS,
  );
});
