// Test helpers shipped as `llmux/testing`: a real OpenAI-compatible mock upstream for relay tests and benchmarks.
export { createMockUpstream } from './mock-upstream.js';
export type {
  MockBehaviour,
  MockBehaviourFactory,
  MockUpstream,
  MockUpstreamEvent,
  MockUpstreamOptions,
  RecordedRequest,
} from './mock-upstream.js';
