// Constants shared by the relay benchmark (bench/relay.ts) and its servers (bench/relay-server.ts).

/** The client key every benchmark request carries (S4 authenticates it). */
export const BENCH_KEY = 'sk-llmux-bench-0123456789abcdef';
/** Content chunks the mock sends for a streamed request. */
export const SSE_CHUNKS = 20;
