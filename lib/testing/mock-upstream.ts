// The public entry of the mock upstream: createMockUpstream starts a real HTTP server speaking the
// OpenAI and Anthropic wire protocols; the pieces live in ./mock/, one job per file.
import { resolveOptions } from './mock/options.js';
import { MockUpstreamServer } from './mock/server.js';
import type { MockUpstream, MockUpstreamOptions } from './mock/types.js';

export type {
  MockBehaviour,
  MockBehaviourFactory,
  MockFinishReason,
  MockUsage,
  MockUpstream,
  MockUpstreamEvent,
  MockUpstreamOptions,
  RecordedRequest,
} from './mock/types.js';

/**
 * Starts a real HTTP server on a free loopback port that answers as OpenAI and Anthropic do, for tests
 * and benchmarks.
 *
 * Routes — OpenAI: `POST /v1/chat/completions` and `POST /v1/completions` (JSON, or SSE when `"stream": true`;
 * `n` choices, tool calls), `POST /v1/embeddings` (floats or base64), `GET /v1/models`, `GET /v1/models/{id}`,
 * `POST /v1/responses` (JSON or typed events), `GET`/`DELETE /v1/responses/{id}`,
 * `POST /v1/responses/{id}/cancel`, `GET /v1/responses/{id}/input_items`. Anthropic: `POST /v1/messages`
 * (JSON or events), `POST /v1/messages/count_tokens`. Anything else is a 404 in the route's protocol shape.
 *
 * Every POST request takes the next {@link MockBehaviour} from `enqueue(...)`, else the one from
 * `setBehaviour(...)`, else the plain default (3 chunks `tok0 tok1 tok2 `). Token counts are deterministic:
 * the prompt tokens are the words of the prompt text (at least 1) and the output tokens the chunks sent; a
 * behaviour's `usage` overrides or extends them (cached, cache write, reasoning, audio).
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
