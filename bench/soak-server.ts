// The server of the memory soak: S4 (the full llmux preset, bench/scenarios.ts) in its own child
// process, forked by bench/soak.ts with --expose-gc. Args: <upstream url> <tracker capacity>.
// It reports `{ port }` over IPC once listening, answers `sample`, `gc` and `snapshot` messages with
// its memory, and exits when the parent goes away. Run: by `npm run bench:soak`, not on its own.
import type { AddressInfo } from 'node:net';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { RequestTracker } from '../lib/index.js';
import { lib } from './llmux.js';
import { fullPreset, listen } from './scenarios.js';

/** Full collections per forced GC: the second and third catch what finalizers and weak refs freed. */
const GC_PASSES = 3;

/** A message from bench/soak.ts. */
export type SoakRequest = { type: 'sample' } | { type: 'gc' } | { type: 'snapshot'; path: string };

/** The server's memory and tracker, as sent back for `sample` and `gc`. */
export interface SoakSample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  trackerSize: number;
  trackerCapacity: number;
  /** CPU time (user + system) of the server so far, ms. */
  cpuMs: number;
  /**
   * Heap used just after the latest major (mark-compact) GC, 0 before the first: unlike `heapUsed`
   * it does not rise and fall with the garbage of the moment, which grows with the request rate.
   */
  heapAfterMajorGc: number;
  /** Major GCs so far (forced ones included). */
  majorGcs: number;
}

/** The reply to `snapshot`: where the heap snapshot was written. */
export interface SoakSnapshotReply {
  path: string;
}

/** Watches the GCs of this process: the heap used right after each major one. */
class MajorGcWatch {
  heapAfter = 0;
  count = 0;
  private readonly observer = new PerformanceObserver((list) => {
    const majors = list.getEntries().filter((entry) => {
      const detail = (entry as { detail?: { kind?: number } }).detail;
      return detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
    }).length;
    if (majors === 0) return;
    // Read when the observer runs, shortly after the GC: a little young garbage may be counted.
    this.heapAfter = process.memoryUsage().heapUsed;
    this.count += majors;
  });

  constructor() {
    this.observer.observe({ entryTypes: ['gc'] });
  }
}

function sampleOf(tracker: RequestTracker, gcWatch: MajorGcWatch): SoakSample {
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  const cpu = process.cpuUsage();
  return {
    rss,
    heapUsed,
    heapTotal,
    external,
    arrayBuffers,
    trackerSize: tracker.size,
    trackerCapacity: tracker.capacity,
    cpuMs: (cpu.user + cpu.system) / 1_000,
    heapAfterMajorGc: gcWatch.heapAfter,
    majorGcs: gcWatch.count,
  };
}

function forceGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('soak-server: run with --expose-gc (bench/soak.ts does)');
  for (let i = 0; i < GC_PASSES; i++) gc();
}

function answer(
  tracker: RequestTracker,
  gcWatch: MajorGcWatch,
  msg: SoakRequest,
): SoakSample | SoakSnapshotReply {
  if (msg.type === 'gc') forceGc();
  if (msg.type === 'snapshot') return { path: v8.writeHeapSnapshot(msg.path, { exposeNumericValues: true }) };
  return sampleOf(tracker, gcWatch);
}

async function main(): Promise<void> {
  const [upstream, capacityArg] = process.argv.slice(2);
  if (upstream === undefined) throw new Error('soak-server: usage: soak-server.ts <upstream url> <capacity>');
  const tracker = new lib.RequestTracker({
    capacity: Number(capacityArg ?? 1_000),
    sink: new lib.CallbackSink(() => {}),
  });
  const server = await listen(fullPreset(upstream, { tracker }));
  const gcWatch = new MajorGcWatch();
  process.on('message', (msg: SoakRequest) => process.send?.(answer(tracker, gcWatch, msg)));
  process.send?.({ port: (server.address() as AddressInfo).port });
}

process.on('disconnect', () => process.exit(0));
main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
