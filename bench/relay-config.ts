// Constants and messages shared by the relay benchmark (bench/relay.ts) and its servers
// (bench/relay-server.ts): the client key, the workload markers the mock answers by, and the stats
// a server reports over IPC for one measurement window.

/** The client key every benchmark request carries (S4 authenticates it). */
export const BENCH_KEY = 'sk-llmux-bench-0123456789abcdef';
/** Content chunks the mock sends for a streamed request without a workload marker (the soak's). */
export const SSE_CHUNKS = 20;

/**
 * The request body's `user` field picks the mock's answer (every relay forwards the body as is):
 * `sse-<n>` streams n content chunks (`paced-<n>-<ms>` paces them, see below); `retry-429` / `retry-500` fail the first attempt of each
 * `x-request-id` with that status (the 429 with `Retry-After: 0`) and answer the second normally.
 */
export const SSE_MARKER_PREFIX = 'sse-';
/**
 * `paced-<n>-<ms>` streams n content chunks, waiting ms before each one (the mock's `chunkDelayMs`):
 * the paced streams of bench/streams.ts.
 */
export const PACED_MARKER_PREFIX = 'paced-';
export const RETRY_MARKERS = { 'retry-429': 429, 'retry-500': 500 } as const;
export type RetryMarker = keyof typeof RETRY_MARKERS;

/** Sampling period of the servers' event-loop delay histogram; its figures are reported above it. */
export const ELD_RESOLUTION_MS = 10;

/**
 * Parent → server: open or close a measurement window; or `gc`, a full garbage collection when the
 * server runs with `--expose-gc` (answered `{ collected }`), before an idle memory reading.
 */
export interface WindowRequest {
  type: 'window-start' | 'window-end' | 'gc';
}

/** Server → parent: what one server did during the window that just closed. */
export interface WindowStats {
  /** Requests the server received (for the mock: upstream attempts). */
  requests: number;
  /** User plus system CPU time of the server process, in µs. */
  cpuUs: number;
  /** Wall time of the window, in µs. */
  wallUs: number;
  /** Event-loop delay p99 beyond the sampling period, in ms (0 when the loop was never late). */
  eldP99Ms: number;
  /** Mock only: first attempts it failed on purpose (retry workloads). */
  retryFailures: number;
  /** Mock only: second attempts it answered normally (retry workloads). */
  retrySuccesses: number;
}
