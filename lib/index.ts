// The public API of llmux: re-exports only.
export {
  LlmuxError,
  errors,
  isLlmuxError,
  sendError,
  sseErrorFrame,
  toLlmuxError,
  decodeUpstreamError,
} from './errors.js';
export type {
  LlmuxErrorCode,
  LlmuxErrorInit,
  LlmuxErrorType,
  OpenAIErrorBody,
  UpstreamErrorCategory,
  DecodedUpstreamError,
} from './errors.js';
export { RequestContext, getContext, ensureContext, isSaneRequestId, REQUEST_ID_HEADER } from './context.js';
export type { Usage } from './context.js';
export { requestContext } from './middleware/request-context.js';
export { recovery, asyncHandler, stderrLogger } from './middleware/recovery.js';
export type { Logger, RecoveryOptions } from './middleware/recovery.js';
export { bodyLimit, DEFAULT_MAX_BODY_BYTES } from './middleware/body-limit.js';
export type { BodyLimitOptions } from './middleware/body-limit.js';
export { keyAuth } from './middleware/key-auth.js';
export type { KeyAuthOptions, StaticKey } from './middleware/key-auth.js';
export { hashApiKey } from './keys/hash.js';
export { streamRelay } from './middleware/stream-relay.js';
export type { StreamRelay, StreamRelayOptions } from './middleware/stream-relay.js';
export { passthrough } from './middleware/passthrough.js';
export type { Passthrough, PassthroughOptions } from './middleware/passthrough.js';
export { staticUpstream } from './upstream/source.js';
export type {
  AttemptOutcome,
  StaticUpstreamOptions,
  UpstreamEndpoint,
  UpstreamSource,
} from './upstream/source.js';
export type { UpstreamClientOptions } from './upstream/clients.js';
export { SseSplitter } from './upstream/sse.js';
export type { SseVisitor } from './upstream/sse.js';
export { parseRetryAfterMs } from './retry/retry-after.js';
export { redactSecrets, maskKey } from './redact.js';
export { hardenServer, createServer, shutdown } from './server.js';
export type * from './server.js';
export { llmux, RELAYED_ROUTES } from './preset.js';
export type { LlmuxOptions, LlmuxRouter } from './preset.js';
