// Test helpers shipped as `llmux/testing`: a real mock upstream speaking OpenAI's and Anthropic's wire
// protocols, for relay tests and benchmarks.
export { createMockUpstream } from './mock-upstream.js';
export type {
  MockBehaviour,
  MockBehaviourFactory,
  MockFinishReason,
  MockUpstream,
  MockUpstreamEvent,
  MockUpstreamOptions,
  MockUsage,
  RecordedRequest,
} from './mock-upstream.js';
