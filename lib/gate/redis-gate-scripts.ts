// The Lua scripts of RedisSemaphore: taking, renewing and giving back permits of a gate shared by
// every instance. Each is one atomic step in Redis, so no two instances can both take the last one.
//
// Conventions shared by every script:
// - KEYS[1] is the gate's sorted set of holders: member = holder id, score = lease expiry in ms.
//   A holder whose score is in the past is gone (its instance stopped renewing: it crashed, hung or
//   lost Redis); every script drops those first, so an expired lease frees its permit by itself.
// - Time is Redis's own `TIME`, read inside the script: lease expiries never depend on the clocks
//   of the instances, which may disagree by seconds. (Unlike the key store's scripts, which take
//   the caller's `nowMs`: a lease must mean the same thing to every instance.)
// - Holder ids are walked in a loop, never `unpack`ed, so any number of them fits Lua's stack.
// - Numbers are written with `%.17g` (Lua's own conversion keeps only 14 digits).

/** Helpers prepended to every script. */
const HELPERS = `
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local function fmt(x) return string.format('%.17g', x) end
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function dropExpired(now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
  return redis.call('ZCARD', key)
end
local function expireWithLastLease(now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', key, math.max(1, math.ceil(tonumber(last[2]) - now)) + 1000) end
end
`;

/**
 * Takes permits for the holders given, in order, while fewer than `max` are held. KEYS: the
 * holder set. ARGV: max, leaseMs, then holder ids. Returns `{ admitted, held, nextExpiryInMs }`:
 * how many of the ids (the first ones) now hold a permit, the permits held after it, and the time
 * until the earliest lease ends (`-1` when none is held), so a refused waiter knows when to look
 * again even if no release is ever announced.
 */
export const ACQUIRE_SCRIPT = `${HELPERS}
local max, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = nowMs()
local held = dropExpired(now)
local admitted = 0
for i = 3, #ARGV do
  if held >= max then break end
  redis.call('ZADD', key, fmt(now + lease), ARGV[i])
  held = held + 1
  admitted = admitted + 1
end
if admitted > 0 then expireWithLastLease(now) end
local nextExpiry = -1
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if first[2] then nextExpiry = math.max(0, tonumber(first[2]) - now) end
return { admitted, held, nextExpiry }
`;

/**
 * Gives permits back and announces it. KEYS: the holder set. ARGV: the release channel, then
 * holder ids. Publishes the number freed on the channel when any was still held, so waiters on
 * every instance look at once. Returns `{ removed, held }`.
 */
export const RELEASE_SCRIPT = `${HELPERS}
local removed = 0
for i = 2, #ARGV do
  removed = removed + redis.call('ZREM', key, ARGV[i])
end
if removed > 0 then redis.call('PUBLISH', ARGV[1], removed) end
return { removed, redis.call('ZCARD', key) }
`;

/**
 * Extends the leases of the holders given to `leaseMs` from now. KEYS: the holder set. ARGV: max,
 * leaseMs, then holder ids. A holder whose lease already ran out (renewals failed for a whole
 * lease) takes a permit again if one is free, and is counted as lost otherwise: the gate then
 * never holds more than `max`, at the price of that request running unaccounted. Returns
 * `{ lost, held }`.
 */
export const RENEW_SCRIPT = `${HELPERS}
local max, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = nowMs()
local held = dropExpired(now)
local expiry = fmt(now + lease)
local lost = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', key, id) then
    redis.call('ZADD', key, expiry, id)
  elseif held < max then
    redis.call('ZADD', key, expiry, id)
    held = held + 1
  else
    lost = lost + 1
  end
end
if held > 0 then expireWithLastLease(now) end
return { lost, held }
`;
