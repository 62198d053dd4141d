// The public entry of the mock upstream: createMockUpstream starts a real HTTP server speaking the
// OpenAI and Anthropic wire protocols; the pieces live in ./mock/, one job per file.
import { resolveOptions } from './mock/options.js';
import { MockUpstreamServer } from './mock/server.js';
import type { MockUpstream, MockUpstreamOptions } from './mock/types.js';

export type {
  MockBehaviour,
  MockBehaviourFactory,
  MockUpstream,
  MockUpstreamEvent,
  MockUpstreamOptions,
  RecordedRequest,
} from './mock/types.js';

/**
 * Starts a real OpenAI-compatible HTTP server on a free loopback port, for tests and benchmarks.
 *
 * Routes: `POST /v1/chat/completions` and `POST /v1/completions` (JSON, or SSE when `"stream": true`),
 * `POST /v1/embeddings`, `GET /v1/models`; anything else is a 404 in the OpenAI error shape. Every POST request
 * takes the next {@link MockBehaviour} from `enqueue(...)`, else the one from `setBehaviour(...)`, else the plain
 * default (3 chunks `tok0 tok1 tok2 `). Token counts are deterministic: `prompt_tokens` is the number of words in
 * the string message contents (at least 1) and `completion_tokens` the number of chunks.
 *
 * @example
 * ```ts
 * const upstream = await createMockUpstream();
 * upstream.enqueue({ status: 429, retryAfter: '1' }, { chunks: 5, chunkDelayMs: 10 });
 * // … point the relay at `${upstream.url}/v1` and send two requests …
 * const [limited, streamed] = await upstream.waitForSettled(2);
 * await upstream.close();
 * ```
 */
export async function createMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const mock = new MockUpstreamServer(resolveOptions(options));
  await mock.listen();
  return mock;
}
