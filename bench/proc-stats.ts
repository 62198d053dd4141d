// Memory and CPU time of any process by its id, read from Linux's /proc, so every process of a
// benchmark (ours, or a peer gateway that speaks no IPC) is measured the same way from outside.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** One reading of a process. */
export interface ProcSample {
  /** Resident set size, bytes. */
  rssBytes: number;
  /** User plus system CPU time since the process started, µs (clock-tick resolution, usually 10 ms). */
  cpuUs: number;
}

/** A system setting from `getconf`, or `fallback` when it cannot be read. */
function systemSetting(name: string, fallback: number): number {
  try {
    const value = Number(execFileSync('getconf', [name], { encoding: 'utf8' }).trim());
    return Number.isSafeInteger(value) && value > 0 ? value : fallback;
  } catch {
    return fallback;
  }
}

const US_PER_TICK = 1_000_000 / systemSetting('CLK_TCK', 100);
const PAGE_BYTES = systemSetting('PAGESIZE', 4_096);

/** Throws unless /proc can be read (Linux), naming what the benchmark needs it for. */
export function checkProc(): void {
  try {
    readFileSync('/proc/self/stat', 'utf8');
  } catch {
    throw new Error(
      'bench: /proc is missing: this benchmark reads process memory and CPU time from it (Linux)',
    );
  }
}

/**
 * Connections the kernel dropped because a listening socket's accept queue was full (TcpExt
 * ListenOverflows, this network namespace, every process): the client retries a second or more
 * later. 0 when /proc/net/netstat cannot be read.
 */
export function listenOverflows(): number {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const names = lines.find((line) => line.startsWith('TcpExt:'))?.split(' ') ?? [];
    const values = lines.filter((line) => line.startsWith('TcpExt:'))[1]?.split(' ') ?? [];
    const at = names.indexOf('ListenOverflows');
    return at === -1 ? 0 : Number(values[at] ?? 0);
  } catch {
    return 0;
  }
}

/** The process's RSS and CPU time now; throws when it is gone. */
export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so utime (14) and stime (15) sit at 11 and 12, rss pages (24) at 21.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssBytes: Number(fields[21]) * PAGE_BYTES, cpuUs: ticks * US_PER_TICK };
}
