// Where a relay scenario spends its CPU: runs the mock and one scenario (default S4, the full
// preset) in child processes, the scenario under `--cpu-prof`, drives JSON requests at it for a
// while, and prints the functions with the most self time, grouped by file.
// Run: npm run bench:profile  (BENCH_PROFILE_SCENARIO=S2, BENCH_PROFILE_MS=8000, BENCH_PROFILE_CONNECTIONS=32)
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { sendMany, throughput } from './load.js';
import { ServerProcess, serverFlags, stopServers } from './relay-children.js';
import { runMain } from './run.js';
import { JSON_WORKLOAD } from './relay-plan.js';

const scenario = process.env.BENCH_PROFILE_SCENARIO ?? 'S4';
const durationMs = Number(process.env.BENCH_PROFILE_MS ?? 8_000);
const connections = Number(process.env.BENCH_PROFILE_CONNECTIONS ?? 32);
const TOP = 30;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

async function main(): Promise<void> {
  const dir = fileURLToPath(new URL(`./results/profile-${scenario}-${Date.now()}/`, import.meta.url));
  mkdirSync(dir, { recursive: true });
  const mock = await ServerProcess.start('mock', ['mock'], undefined);
  const server = await ServerProcess.start(scenario, [scenario, mock.url], undefined, {
    flags: [...serverFlags(), '--cpu-prof', `--cpu-prof-dir=${dir}`],
  });
  const pool = new Pool(server.url, { connections, keepAliveTimeout: 60_000 });
  await sendMany(pool, JSON_WORKLOAD, connections, 5_000);
  const figures = await throughput(pool, JSON_WORKLOAD, connections, durationMs);
  await pool.close();
  await stopServers();
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no profile written in ${dir}`);
  const profile = JSON.parse(readFileSync(dir + file, 'utf8')) as CpuProfile;
  report(profile, figures.rps, dir + file);
}

function report(profile: CpuProfile, rps: number, path: string): void {
  const byNode = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const totals = new Map<string, number>();
  let all = 0;
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0;
    all += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '(native)' : url.replace(/^.*\/(node_modules|lib|bench|dist)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    totals.set(key, (totals.get(key) ?? 0) + us);
  }
  const rows = [...totals].sort((a, b) => b[1] - a[1]).slice(0, TOP);
  process.stdout.write(
    `${scenario}: ${Math.round(rps)} req/s at ${connections} connections; profile ${path}\n`,
  );
  process.stdout.write(`self time share (of ${(all / 1e6).toFixed(1)} s sampled):\n`);
  for (const [key, us] of rows)
    process.stdout.write(`${((100 * us) / all).toFixed(1).padStart(5)}%  ${key}\n`);
}

runMain(main);
