// What every benchmark entry point shares: numbers read from BENCH_* variables, a watchdog that
// ends a run that hangs, and a main that kills its child servers on any exit.
import { killServers } from './relay-children.js';

/** A positive number from the environment variable `name`, or `fallback` when it is unset. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0)
    throw new TypeError(`bench: ${name} must be a positive number, got ${raw}`);
  return value;
}

/** Ends the process after `seconds` if the run is still going; `setBy` says where the bound came from. */
export function armWatchdog(seconds: number, setBy = 'BENCH_WATCHDOG_S'): void {
  setTimeout(() => {
    process.stderr.write(`bench: still running after ${seconds.toFixed(0)} s, giving up (${setBy})\n`);
    process.exit(1);
  }, seconds * 1_000).unref();
}

/**
 * Runs `main`, exiting with `process.exitCode` (0 unless main set it) or 1 with its error; child
 * servers are killed on every way out.
 */
export function runMain(main: () => Promise<void>): void {
  process.on('exit', killServers);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killServers();
      process.exit(130);
    });
  }
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${String((err as Error)?.stack ?? err)}\n`);
      process.exit(1);
    },
  );
}
