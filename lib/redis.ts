// `llmux/redis`: the Redis-backed pieces for hosts that run several instances. A subpath of its
// own, so hosts that never use Redis never load ioredis.
export { RedisKeyStore } from './keys/redis-store.js';
export { StoreUnavailableError, isStoreUnavailableError } from './errors/store.js';
export type { RedisKeyStoreOptions } from './keys/redis-store.js';
export { distributedGate } from './middleware/distributed-gate.js';
export type {
  DistributedGate,
  DistributedGateOptions,
  DistributedGateStats,
} from './middleware/distributed-gate.js';
export { RedisSemaphore, RedisPermit, DEFAULT_LEASE_MS, DEFAULT_POLL_MS } from './gate/redis-semaphore.js';
export type { RedisSemaphoreOptions, RedisSemaphoreStats } from './gate/redis-semaphore.js';
export { sharePoolState } from './upstream/redis-pool-state.js';
export type { SharePoolStateOptions, PoolStateSharing } from './upstream/redis-pool-state.js';
