// The public API of llmux: re-exports only.
export {
  LlmuxError,
  llmuxError,
  errors,
  isLlmuxError,
  sendError,
  sseErrorFrame,
  toLlmuxError,
} from './errors/llmux-error.js';
export type { LlmuxErrorInit, LlmuxErrorOptions, OpenAIErrorBody } from './errors/llmux-error.js';
export { ERROR_CATALOG, ERROR_CODES, errorSpecOf } from './errors/catalog.js';
export type { ErrorSpec, LlmuxErrorCode, LlmuxErrorType } from './errors/catalog.js';
export { decodeUpstreamError } from './errors/upstream.js';
export type { UpstreamErrorCategory, DecodedUpstreamError } from './errors/upstream.js';
export { StoreUnavailableError, isStoreUnavailableError } from './errors/store.js';
export { RequestContext, getContext, ensureContext, isSaneRequestId, REQUEST_ID_HEADER } from './context.js';
export type { Usage } from './context.js';
export { requestContext } from './middleware/request-context.js';
export { recovery, asyncHandler } from './middleware/recovery.js';
export type { RecoveryOptions } from './middleware/recovery.js';
export { stderrLogger } from './log.js';
export type { Logger } from './log.js';
export { bodyLimit, DEFAULT_MAX_BODY_BYTES } from './middleware/body-limit.js';
export type { BodyLimitOptions } from './middleware/body-limit.js';
export { keyAuth } from './middleware/key-auth.js';
export { reservationOf, billOf } from './accounting/reservation.js';
export type { Reservation, OutputReserve } from './accounting/reservation.js';
export {
  estimatePrompt,
  textTokens,
  openAiImageTokens,
  anthropicImageTokens,
} from './accounting/estimate.js';
export type { PromptEstimate, ImageTokenFormula } from './accounting/estimate.js';
export type { SettlementQueueOptions, SettlementStats } from './accounting/settlement-queue.js';
export type { KeyAuth, KeyAuthOptions, StaticKey } from './middleware/key-auth.js';
export { hashApiKey } from './keys/hash.js';
export { generateApiKey, KEY_PREFIX } from './keys/generate.js';
export { Pricing } from './pricing/pricing.js';
export type { PricingOptions } from './pricing/pricing.js';
export {
  DEFAULT_PRICING,
  CATALOG_UPDATED,
  CATALOG_MODELS,
  loadPricing,
  pricingTableOf,
} from './pricing/catalog.js';
export type { PricingTable, PriceCatalog, CatalogEntry } from './pricing/catalog.js';
export { costOf } from './pricing/price.js';
export type { ModelPrice, LongContextPrice } from './pricing/price.js';
export { usageOf, TOKEN_CLASSES } from './usage.js';
export type { TokenClasses } from './usage.js';
export { MemoryKeyStore } from './keys/memory-store.js';
export type { MemoryKeyStoreOptions } from './keys/memory-store.js';
export { KeyStoreError, isKeyStoreError } from './keys/errors.js';
export { seedKeyStore } from './keys/seed.js';
export type { KeyStoreSeed } from './keys/seed.js';
export { managementRouter } from './keys/management-router.js';
export type { ManagementRouterOptions } from './keys/management-router.js';
export type * from './keys/types.js';
export { streamRelay } from './middleware/stream-relay.js';
export type { StreamRelay, StreamRelayOptions } from './middleware/stream-relay.js';
export { passthrough } from './middleware/passthrough.js';
export type { Passthrough, PassthroughOptions } from './middleware/passthrough.js';
export { staticUpstream } from './upstream/source.js';
export type {
  AnswerFacts,
  AttemptOutcome,
  ServedModel,
  StaticUpstreamOptions,
  UpstreamEndpoint,
  UpstreamSource,
} from './upstream/source.js';
export { ModelRouter, modelRouter } from './upstream/router.js';
export type { ModelDeployment, ModelGroup, ModelRouterOptions, RoutedModelEntry } from './upstream/router.js';
export { readRateLimits } from './upstream/rate-limits.js';
export type { UpstreamRateLimits } from './upstream/rate-limits.js';
export { DEFAULT_RESPONSE_HEADERS, MODEL_HEADER } from './upstream/answer-headers.js';
export { ClientCache } from './upstream/client-cache.js';
export type { ClientCacheOptions } from './upstream/client-cache.js';
export { UpstreamPool, upstreamPool } from './upstream/pool.js';
export type {
  PooledUpstreamOptions,
  UpstreamPoolCooldownOptions,
  UpstreamPoolOptions,
  UpstreamStatus,
  UpstreamState,
  UpstreamStateChange,
  UpstreamPoolObserver,
  SharedUpstreamState,
} from './upstream/pool.js';
export { createStrategy, LATENCY_STALE_MS } from './upstream/strategies.js';
export type { StrategyCandidate, UpstreamStrategy, UpstreamStrategyName } from './upstream/strategies.js';
export type { HedgeOptions } from './upstream/exchange.js';
export { retry, RetryPolicy } from './retry/policy.js';
export type { RetryOptions, RetryDecision, RetryFailure, RetryGiveUpReason } from './retry/policy.js';
export { RetryBudget } from './retry/budget.js';
export type { RetryBudgetOptions } from './retry/budget.js';
export { sleep } from './retry/sleep.js';
export { fanOut } from './fan-out.js';
export type { FanOutOptions, FanOutTask } from './fan-out.js';
export { SseSplitter } from './upstream/sse.js';
export type { SseVisitor } from './upstream/sse.js';
export { parseRetryAfterMs } from './retry/retry-after.js';
export { redactSecrets, maskKey } from './redact.js';
export { hardenServer, createServer, shutdown } from './server.js';
export type * from './server.js';
export { concurrencyGate, DEFAULT_MAX_GATE_KEYS } from './middleware/concurrency-gate.js';
export type {
  ConcurrencyGate,
  ConcurrencyGateOptions,
  ConcurrencyGateStats,
} from './middleware/concurrency-gate.js';
export { FifoSemaphore } from './gate/semaphore.js';
export {
  createMetrics,
  metricsHandler,
  DEFAULT_DURATION_BUCKETS,
  DEFAULT_TTFB_BUCKETS,
  DEFAULT_METRIC_MODELS,
  KNOWN_ERROR_CODES,
  METRIC_ROUTES,
} from './metrics/metrics.js';
export type {
  LlmuxMetrics,
  MetricsOptions,
  MetricsHandler,
  MetricsMiddleware,
  WatchableGate,
  WatchablePool,
} from './metrics/metrics.js';
export { recordOf } from './tracking/record.js';
export type { RequestRecord } from './tracking/record.js';
export { RequestTracker } from './tracking/tracker.js';
export type {
  RequestTrackerOptions,
  RecordSink,
  RecordListener,
  StatsQuery,
  TrackerStats,
  TrackerSnapshot,
} from './tracking/tracker.js';
export { trackerRouter } from './tracking/tracker-router.js';
export type { TrackerRouter, TrackerRouterOptions } from './tracking/tracker-router.js';
export { STATS_WINDOWS, isStatsWindow } from './tracking/windows.js';
export type { StatsWindow } from './tracking/windows.js';
export { LATENCY_BUCKET_BOUNDS_MS } from './tracking/histogram.js';
export { UsageSink } from './tracking/sink.js';
export type { UsageSinkOptions, UsageSinkStats } from './tracking/sink.js';
export { CallbackSink } from './tracking/callback-sink.js';
export type { UsageBatchWriter } from './tracking/callback-sink.js';
export { JsonlFileSink } from './tracking/jsonl-file-sink.js';
export type { JsonlFileSinkOptions } from './tracking/jsonl-file-sink.js';
export { healthRouter } from './health/router.js';
export type {
  HealthPool,
  HealthStore,
  HealthRouterOptions,
  HealthComponent,
  HealthReport,
  HealthUpstream,
} from './health/router.js';
export { llmux, RELAYED_ROUTES } from './preset.js';
export type { LlmuxOptions, LlmuxRouter } from './preset.js';
