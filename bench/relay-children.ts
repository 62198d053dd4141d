// The benchmarks' child processes: servers forked from bench/relay-server.ts (or bench/soak-server.ts),
// load generators, and peers spawned from their own command; pinned with taskset where the machine
// allows, with a raised file-descriptor limit when asked, asked over IPC, and killed when the run ends.
import { execFileSync, fork, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { WindowRequest, WindowStats } from './relay-config.js';

const START_TIMEOUT_MS = 30_000;
const REPLY_TIMEOUT_MS = 10_000;

/** Where each process runs. */
export interface Pinning {
  used: boolean;
  loadGeneratorCore?: number;
  relayCore?: number;
  mockCore?: number;
  note: string;
}

/**
 * Load generator on core 0, relays on core 1; the mock gets core 2 when there is one, else it
 * shares core 0 with the load generator. Pins this process at once.
 */
export function pinProcesses(): Pinning {
  const cpus = os.cpus().length;
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  } catch {
    return { used: false, note: 'taskset missing: nothing pinned' };
  }
  if (cpus < 2) return { used: false, note: 'a single core: nothing pinned' };
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const mockCore = cpus >= 3 ? 2 : 0;
  return {
    used: true,
    loadGeneratorCore: 0,
    relayCore: 1,
    mockCore,
    note: `taskset: load generator on core 0, relay under test on core 1, mock upstream on core ${mockCore}`,
  };
}

/**
 * Node flags of every server: `--no-memory-reducer`, then any from BENCH_SERVER_FLAGS (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`). Interleaving leaves each server idle for 10–100 s between
 * its turns; after 8 s idle V8's memory reducer shrinks the heap, and the next seconds of load then
 * cost about twice the CPU per request (measured on S4), which a server under steady traffic never pays.
 */
export function serverFlags(): string[] {
  const extra = (process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
  return ['--no-memory-reducer', ...extra];
}

/** How {@link ServerProcess.start} runs a server other than the relay benchmark's. */
export interface ServerStart {
  /** The script, relative to bench/. Default `./relay-server.ts`. */
  script?: string;
  /** Node flags. Default {@link serverFlags}. */
  flags?: readonly string[];
  /** Open files the process may hold (`ulimit -n` in a shell before it starts). Default: inherited. */
  fileLimit?: number;
}

/** The hard limit of open files (`ulimit -Hn`), or undefined when it cannot be read or is unlimited. */
export function hardFileLimit(): number | undefined {
  try {
    const limit = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
    return Number.isSafeInteger(limit) ? limit : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Throws unless a child can be given `count` open files: a shell raises its own limit (soft and
 * hard; raising the hard one takes root with CAP_SYS_RESOURCE) and children inherit it. `hint`
 * ends the error message (what to lower).
 */
export function checkFileLimit(count: number, hint = ''): void {
  try {
    execFileSync('sh', ['-c', `ulimit -n ${count}`], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `bench: a child needs ${count} open files; the hard limit is ${hardFileLimit() ?? 'unknown'} (ulimit -Hn) ` +
        'and cannot be raised here (that takes root with CAP_SYS_RESOURCE; or raise it in ' +
        `/etc/security/limits.conf or the container's settings)${hint === '' ? '' : `. ${hint}`}`,
    );
  }
}

/** Children whose exit was asked for: their exit does not end the run. */
const expectedExits = new WeakSet<ChildProcess>();

/**
 * One server process and its IPC channel (it answers in order, so replies queue FIFO). A load
 * generator runs as one too: its first message has no port, and its `url` is empty.
 */
export class ServerProcess {
  private readonly pending: ((reply: unknown) => void)[] = [];

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (reply) => this.pending.shift()?.(reply));
  }

  /** The process id (of node itself: the shell and taskset exec it). */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  /**
   * Forks `relay-server.ts <args>` (or `start.script`), pinned to `core` when given, and waits
   * for its first message, `{ port }` (or `{}` for a child that serves nothing). The server exiting
   * before {@link stopServers} or its own {@link ServerProcess.stop} ends the run.
   */
  static start(
    name: string,
    args: string[],
    core: number | undefined,
    start: ServerStart = {},
  ): Promise<ServerProcess> {
    const script = fileURLToPath(new URL(start.script ?? './relay-server.ts', import.meta.url));
    const child = forkPinned(script, args, core, start.flags ?? serverFlags(), start.fileLimit);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server ${name} did not start in 30 s`)),
        START_TIMEOUT_MS,
      );
      child.once('message', (msg: { port?: number }) => {
        clearTimeout(timer);
        const url = msg.port === undefined ? '' : `http://127.0.0.1:${msg.port}`;
        resolve(new ServerProcess(name, child, url));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`server ${name} exited with ${code ?? signal}`));
        if (!stopping && !expectedExits.has(child)) {
          process.stderr.write(`bench: server ${name} exited with ${code ?? signal} during the run\n`);
          process.exit(1);
        }
      });
    });
  }

  /** Lets this process exit on its own (it exits when its IPC channel closes), then kills it. */
  stop(graceMs = 5_000): Promise<void> {
    return stopChild(this.child, graceMs);
  }

  /** Resets the server's counters; resolves once it has. */
  async startWindow(): Promise<void> {
    await this.ask<WindowStats>({ type: 'window-start' } satisfies WindowRequest);
  }

  /** The server's stats since {@link startWindow}. */
  endWindow(): Promise<WindowStats> {
    return this.ask<WindowStats>({ type: 'window-end' } satisfies WindowRequest);
  }

  /** Sends `msg` and resolves with the server's reply to it; rejects after `timeoutMs`. */
  ask<T>(
    msg: { readonly type: string; readonly [field: string]: unknown },
    timeoutMs = REPLY_TIMEOUT_MS,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server ${this.name}: no reply to ${msg.type}`)),
        timeoutMs,
      );
      this.pending.push((reply) => {
        clearTimeout(timer);
        resolve(reply as T);
      });
      this.child.send(msg);
    });
  }
}

/**
 * The command line that runs `command` pinned to `core` (taskset) with `fileLimit` open files (a
 * shell that raises its limit, then execs): `[executable, ...arguments]`.
 */
function pinnedCommand(command: readonly string[], core: number | undefined, fileLimit?: number): string[] {
  const pinned = core === undefined ? [...command] : ['taskset', '-c', String(core), ...command];
  return fileLimit === undefined
    ? pinned
    : ['sh', '-c', `ulimit -n ${fileLimit} && exec "$@"`, 'sh', ...pinned];
}

/**
 * Forks a bench script under tsx, pinned to `core` with taskset when one is given, with
 * `fileLimit` open files when given. The run kills it when it ends ({@link killServers}).
 */
export function forkPinned(
  script: string,
  args: readonly string[],
  core: number | undefined,
  nodeFlags: readonly string[],
  fileLimit?: number,
): ChildProcess {
  const [execPath, ...execArgv] = pinnedCommand(
    [process.execPath, ...nodeFlags, '--import', 'tsx'],
    core,
    fileLimit,
  );
  const child = fork(script, args, {
    execPath,
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  running.add(child);
  return child;
}

/**
 * Spawns `command` (no IPC), pinned and with `fileLimit` open files as {@link forkPinned} does. Its
 * exit does not end the run; the run kills it when it ends.
 */
export function spawnPinned(
  command: readonly string[],
  core: number | undefined,
  options: { fileLimit?: number; env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {},
): ChildProcess {
  const [file, ...args] = pinnedCommand(command, core, options.fileLimit);
  const child = spawn(file!, args, {
    env: options.env ?? process.env,
    stdio: options.stdio ?? ['ignore', 'inherit', 'inherit'],
  });
  running.add(child);
  return child;
}

/**
 * Ends one child: closes its IPC channel (a bench child exits then) or, without one, sends SIGTERM;
 * kills it after `graceMs`.
 */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  expectedExits.add(child);
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.connected) child.disconnect();
    else child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([exited, late]);
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
  running.delete(child);
}

const running = new Set<ChildProcess>();
let stopping = false;

/** Lets every server exit on its own (so `--cpu-prof` writes its profile), then kills what is left. */
export async function stopServers(graceMs = 5_000): Promise<void> {
  stopping = true;
  const exits = [...running].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        if (child.connected) child.disconnect();
      }),
  );
  await Promise.race([Promise.all(exits), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
  killServers();
}

/** Kills every server this process started. */
export function killServers(): void {
  stopping = true;
  for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
  running.clear();
}
