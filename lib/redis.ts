// `llmux/redis`: the Redis-backed pieces for hosts that run several instances. A subpath of its
// own, so hosts that never use Redis never load ioredis.
export { RedisKeyStore } from './keys/redis-store.js';
export { StoreUnavailableError, isStoreUnavailableError } from './keys/errors.js';
export type { RedisKeyStoreOptions } from './keys/redis-store.js';
