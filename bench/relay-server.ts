// One server of the relay benchmark, run in its own child process by bench/relay.ts: `mock` (the
// shipped mock upstream, answering by the workload marker in the body) or a relay scenario in front
// of it (`relay-server.ts <scenario> <upstream URL> [capacity]`, see ScenarioFactory). It reports
// `{ port }` over IPC once listening, then answers `window-start` / `window-end`
// with its CPU time, request count and event-loop delay (and `gc` with a collection when it runs
// with --expose-gc), and exits when the parent goes away.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { MockBehaviour, MockUpstream, RecordedRequest } from '../lib/testing/index.js';
import { testing } from './llmux.js';
import {
  ELD_RESOLUTION_MS,
  PACED_MARKER_PREFIX,
  RETRY_MARKERS,
  SSE_CHUNKS,
  SSE_MARKER_PREFIX,
  type WindowRequest,
  type WindowStats,
} from './relay-config.js';
import { KEEP_ALIVE_MS, listen, RELAYS } from './scenarios.js';

/** Request ids remembered between a retry workload's failed first attempt and its retry. */
const MAX_PENDING_RETRIES = 10_000;

/** Counters of one server, reset at every window start. */
class WindowCounters {
  requests = 0;
  retryFailures = 0;
  retrySuccesses = 0;
  private cpu = process.cpuUsage();
  private startedAt = process.hrtime.bigint();
  private readonly eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });

  constructor() {
    this.eld.enable();
  }

  start(): void {
    this.requests = 0;
    this.retryFailures = 0;
    this.retrySuccesses = 0;
    this.eld.reset();
    this.cpu = process.cpuUsage();
    this.startedAt = process.hrtime.bigint();
  }

  end(): WindowStats {
    const cpu = process.cpuUsage(this.cpu);
    const p99Ms = this.eld.count === 0 ? 0 : this.eld.percentile(99) / 1e6;
    return {
      requests: this.requests,
      cpuUs: cpu.user + cpu.system,
      wallUs: Number(process.hrtime.bigint() - this.startedAt) / 1_000,
      eldP99Ms: Math.max(0, p99Ms - ELD_RESOLUTION_MS),
      retryFailures: this.retryFailures,
      retrySuccesses: this.retrySuccesses,
    };
  }
}

const PLAIN: MockBehaviour = {};
const DEFAULT_STREAM: MockBehaviour = { chunks: SSE_CHUNKS };

/** The mock's answers: by the body's `user` marker (see relay-config.ts), counted per window. */
class MockAnswers {
  /** One behaviour per chunk count and delay, keyed `<chunks>-<delayMs>`. */
  private readonly streams = new Map<string, MockBehaviour>();
  private readonly pendingRetries = new Set<string>();

  constructor(private readonly counters: WindowCounters) {}

  readonly answer = (req: RecordedRequest): MockBehaviour => {
    this.counters.requests++;
    const body = req.body as { user?: unknown; stream?: unknown } | undefined;
    const marker = body?.user;
    if (typeof marker === 'string') {
      if (marker.startsWith(SSE_MARKER_PREFIX))
        return this.stream(Number(marker.slice(SSE_MARKER_PREFIX.length)), 0);
      if (marker.startsWith(PACED_MARKER_PREFIX)) {
        const [chunks, delayMs] = marker.slice(PACED_MARKER_PREFIX.length).split('-');
        return this.stream(Number(chunks), Number(delayMs));
      }
      if (marker in RETRY_MARKERS)
        return this.retry(req, RETRY_MARKERS[marker as keyof typeof RETRY_MARKERS]);
    }
    return body?.stream === true ? DEFAULT_STREAM : PLAIN;
  };

  private stream(chunks: number, chunkDelayMs: number): MockBehaviour {
    const key = `${chunks}-${chunkDelayMs}`;
    let behaviour = this.streams.get(key);
    if (behaviour === undefined) this.streams.set(key, (behaviour = { chunks, chunkDelayMs }));
    return behaviour;
  }

  /** Fails the first attempt of a request id, answers its retry. */
  private retry(req: RecordedRequest, status: 429 | 500): MockBehaviour {
    const id = req.headers['x-request-id'];
    if (typeof id !== 'string')
      return { status: 400, body: { error: { message: 'retry workload: no x-request-id' } } };
    if (this.pendingRetries.delete(id)) {
      this.counters.retrySuccesses++;
      return PLAIN;
    }
    if (this.pendingRetries.size >= MAX_PENDING_RETRIES) {
      this.pendingRetries.delete(this.pendingRetries.values().next().value as string);
    }
    this.pendingRetries.add(id);
    this.counters.retryFailures++;
    return status === 429 ? { status, retryAfter: '0' } : { status };
  }
}

async function startMock(counters: WindowCounters): Promise<MockUpstream> {
  const mock = await testing.createMockUpstream({ maxRecorded: 0, keepAliveTimeoutMs: KEEP_ALIVE_MS });
  mock.setBehaviour(new MockAnswers(counters).answer);
  return mock;
}

async function startRelay(
  scenario: string | undefined,
  upstream: string | undefined,
  capacity: string | undefined,
  counters: WindowCounters,
): Promise<Server> {
  const make = scenario === undefined ? undefined : RELAYS[scenario];
  if (make === undefined || upstream === undefined)
    throw new Error(`relay-server: unknown scenario ${scenario}`);
  const server = await listen(make(upstream, capacity === undefined ? undefined : Number(capacity)));
  server.on('request', () => counters.requests++);
  return server;
}

async function main(): Promise<void> {
  const [scenario, upstream, capacity] = process.argv.slice(2);
  const counters = new WindowCounters();
  const port =
    scenario === 'mock'
      ? (await startMock(counters)).port
      : ((await startRelay(scenario, upstream, capacity, counters)).address() as AddressInfo).port;
  process.on('message', (msg: WindowRequest) => {
    if (msg.type === 'window-start') {
      counters.start();
      process.send?.({ type: 'started' });
    } else if (msg.type === 'gc') {
      globalThis.gc?.();
      process.send?.({ collected: globalThis.gc !== undefined });
    } else {
      process.send?.(counters.end());
    }
  });
  process.send?.({ port });
}

process.on('disconnect', () => process.exit(0));
main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
