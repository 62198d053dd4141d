// The Lua scripts of RedisKeyStore: every read-check-write of keys, teams, users and their
// accounting is one script, so it runs atomically in Redis whatever the number of instances.
//
// Conventions shared by every script:
// - ARGV[1] is the full key prefix; keys are built from it, so every key of a store lies under it
//   (put a hash tag in the prefix, `{llmux}:`, to keep them in one slot of a cluster).
// - A record is `<P><kind>:<id>`, its parts `<P><kind>.<part>:<id>` (acct, models, holds,
//   holdcost, keys, users): every name starts with a fixed token up to its first `:`, so no id
//   (ids may hold `:` and `.`) can make one name equal another.
// - Numbers travel as strings: JS writes `String(n)`, Lua writes `%.17g`; both round-trip a double
//   exactly. (Lua's own number-to-string keeps only 14 digits, so it is never used.)
// - Time is only ever the `nowMs` the caller passes: no script calls TIME or reads a clock.

/** Helpers prepended to every script. */
const HELPERS = `
local P = ARGV[1]
local function fmt(x) return string.format('%.17g', x) end
local function rk(kind, part, id)
  if part then return P .. kind .. '.' .. part .. ':' .. id end
  return P .. kind .. ':' .. id
end
local function readRecord(kind, id)
  local rec = redis.call('HGETALL', rk(kind, nil, id))
  if #rec == 0 then return nil end
  return { rec, redis.call('HGET', rk(kind, 'acct', id), 'spend') or '0', redis.call('HGETALL', rk(kind, 'models', id)) }
end
`;

/**
 * Reads records with their spend. ARGV: prefix, kind, mode (`all` | `id` | `hash`), then the id
 * or hash. Returns a list of `{ fields, spendUsd, spendByModel }` triples (flat hashes).
 */
export const READ_SCRIPT = `${HELPERS}
local kind, mode = ARGV[2], ARGV[3]
local ids
if mode == 'all' then
  ids = redis.call('ZRANGE', P .. 'index:' .. kind, 0, -1)
elseif mode == 'hash' then
  local id = redis.call('GET', P .. 'hash:' .. ARGV[4])
  if not id then return {} end
  ids = { id }
else
  ids = { ARGV[4] }
end
local out = {}
for _, id in ipairs(ids) do
  local record = readRecord(kind, id)
  if record then out[#out + 1] = record end
end
return out
`;

/**
 * Creates a key. ARGV: prefix, id, hash, teamId or '', userId or '', mode (`create` | `seed`),
 * idGiven (`1` | `0`), then field/value pairs. In `seed` mode a key whose id exists (or, without a given id, whose
 * hash exists) is left as it is. Returns `{'ok', record}`, `{'exists'}` or `{'error', code, field}`.
 */
export const CREATE_KEY_SCRIPT = `${HELPERS}
local id, hash, teamId, userId, mode, idGiven = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if teamId ~= '' and redis.call('EXISTS', rk('team', nil, teamId)) == 0 then return { 'error', 'invalid_field', 'teamId' } end
if userId ~= '' and redis.call('EXISTS', rk('user', nil, userId)) == 0 then return { 'error', 'invalid_field', 'userId' } end
local idTaken = redis.call('EXISTS', rk('key', nil, id)) == 1
if mode == 'seed' and idGiven == '1' and idTaken then return { 'exists' } end
if redis.call('EXISTS', P .. 'hash:' .. hash) == 1 then
  if mode == 'seed' and idGiven ~= '1' then return { 'exists' } end
  return { 'error', 'duplicate_hash', 'hash' }
end
if idTaken then return { 'error', 'duplicate_id', 'id' } end
redis.call('HSET', rk('key', nil, id), unpack(ARGV, 8))
redis.call('SET', P .. 'hash:' .. hash, id)
redis.call('ZADD', P .. 'index:key', redis.call('INCR', P .. 'seq'), id)
if teamId ~= '' then redis.call('SADD', rk('team', 'keys', teamId), id) end
if userId ~= '' then redis.call('SADD', rk('user', 'keys', userId), id) end
return { 'ok', readRecord('key', id) }
`;

/**
 * Creates a team or a user. ARGV: prefix, kind, id, teamId or '' (users), mode (`create` |
 * `seed`), then field/value pairs. Returns like {@link CREATE_KEY_SCRIPT}.
 */
export const CREATE_RECORD_SCRIPT = `${HELPERS}
local kind, id, teamId, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if teamId ~= '' and redis.call('EXISTS', rk('team', nil, teamId)) == 0 then return { 'error', 'invalid_field', 'teamId' } end
if redis.call('EXISTS', rk(kind, nil, id)) == 1 then
  if mode == 'seed' then return { 'exists' } end
  return { 'error', 'duplicate_id', 'id' }
end
redis.call('HSET', rk(kind, nil, id), unpack(ARGV, 6))
redis.call('ZADD', P .. 'index:' .. kind, redis.call('INCR', P .. 'seq'), id)
if teamId ~= '' then redis.call('SADD', rk('team', 'users', teamId), id) end
return { 'ok', readRecord(kind, id) }
`;

/**
 * Patches a record. ARGV: prefix, kind, id, teamId mode (`keep` | `clear` | `set`), teamId,
 * count of field/value pairs to set, the pairs, then the fields to delete. Returns `{'ok',
 * record}`, `{'missing'}` or `{'error', code, field}`.
 */
export const UPDATE_SCRIPT = `${HELPERS}
local kind, id, teamMode, teamId = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = rk(kind, nil, id)
if redis.call('EXISTS', key) == 0 then return { 'missing' } end
if teamMode == 'set' and redis.call('EXISTS', rk('team', nil, teamId)) == 0 then return { 'error', 'invalid_field', 'teamId' } end
if teamMode ~= 'keep' then
  local old = redis.call('HGET', key, 'teamId')
  if old then redis.call('SREM', rk('team', 'users', old), id) end
  if teamMode == 'set' then redis.call('SADD', rk('team', 'users', teamId), id) end
end
local setCount = tonumber(ARGV[6])
if setCount > 0 then redis.call('HSET', key, unpack(ARGV, 7, 6 + 2 * setCount)) end
if #ARGV > 6 + 2 * setCount then redis.call('HDEL', key, unpack(ARGV, 7 + 2 * setCount)) end
return { 'ok', readRecord(kind, id) }
`;

/**
 * Deletes a team or user nothing references. ARGV: prefix, kind, id. Returns `{'ok'}`,
 * `{'missing'}` or `{'in_use', by}`.
 */
export const DELETE_SCRIPT = `${HELPERS}
local kind, id = ARGV[2], ARGV[3]
local key = rk(kind, nil, id)
if redis.call('EXISTS', key) == 0 then return { 'missing' } end
if redis.call('SCARD', rk(kind, 'keys', id)) > 0 then return { 'in_use', 'keys' } end
if kind == 'team' and redis.call('SCARD', rk(kind, 'users', id)) > 0 then return { 'in_use', 'users' } end
local teamId = redis.call('HGET', key, 'teamId')
if kind == 'user' and teamId then redis.call('SREM', rk('team', 'users', teamId), id) end
redis.call('DEL', key, rk(kind, 'acct', id), rk(kind, 'models', id), rk(kind, 'holds', id), rk(kind, 'holdcost', id), rk(kind, 'keys', id), rk(kind, 'users', id))
redis.call('ZREM', P .. 'index:' .. kind, id)
return { 'ok' }
`;

/** GCRA over one TAT per window, as in gcra.ts, and the helpers of admission and settlement. */
const ACCOUNTING = `
local WINDOW_MS = 60000
local EPSILON_MS = 1e-3
local function consume(tat, cost, now, limit)
  if cost > limit then return false, -1 end
  local base = now
  if tat > now then base = tat end
  local nxt = base + (cost * WINDOW_MS) / limit
  local earliest = nxt - WINDOW_MS
  if earliest - now <= EPSILON_MS then return true, nxt end
  return false, math.ceil(earliest - now - EPSILON_MS)
end
local function adjust(tat, delta, now, limit)
  local base = now
  if tat > now then base = tat end
  local adjusted = base + (delta * WINDOW_MS) / limit
  if adjusted > now then return adjusted end
  return now
end
local function windowState(tat, now, limit)
  local ahead = 0
  if tat > now then ahead = tat - now end
  local fits = math.floor(((WINDOW_MS - ahead + EPSILON_MS) * limit) / WINDOW_MS)
  if fits < 0 then fits = 0 elseif fits > limit then fits = limit end
  local reset = 0
  if ahead > EPSILON_MS then reset = math.ceil(ahead - EPSILON_MS) end
  return { limit, fits, reset }
end
`;

/**
 * Spend kept per model and per day, shared by settlement and by the charge of an expired hold.
 * `retentionDays`, `maxModels`, `otherModels` and `msPerDay` are the caller's locals.
 */
const SPEND = `
-- Adds usd to a record's spend under model (nil: none); returns the name it was kept under.
local function addModelSpend(kind, id, model, usd, maxModels, otherModels)
  if model == nil or model == false then return nil end
  local models = rk(kind, 'models', id)
  local slot = model
  if redis.call('HEXISTS', models, model) == 0 and redis.call('HLEN', models) >= maxModels then slot = otherModels end
  redis.call('HSET', models, slot, fmt((tonumber(redis.call('HGET', models, slot)) or 0) + usd))
  return slot
end
-- Adds to the day's spend bucket of one identity: added holds spend, requests, prompt,
-- completion and the five token classes, in that order. Buckets older than the retention are
-- pruned as the days go by, and each expires by itself once past it.
local function addToBucket(day, keyId, teamId, userId, slot, added, retentionDays, msPerDay)
  local daysKey, latestKey = P .. 'spend.days', P .. 'spend.latest'
  local latest = tonumber(redis.call('GET', latestKey))
  if latest == nil or day > latest then
    latest = day
    redis.call('SET', latestKey, fmt(latest))
    local old = redis.call('ZRANGEBYSCORE', daysKey, '-inf', fmt(latest - retentionDays))
    for _, oldDay in ipairs(old) do redis.call('DEL', P .. 'spend.day:' .. oldDay) end
    redis.call('ZREMRANGEBYSCORE', daysKey, '-inf', fmt(latest - retentionDays))
  end
  if day <= latest - retentionDays then return end
  local bucket = P .. 'spend.day:' .. fmt(day)
  redis.call('ZADD', daysKey, fmt(day), fmt(day))
  local identity = cjson.encode({ keyId, teamId or cjson.null, userId or cjson.null, slot or cjson.null })
  local sums = { 0, 0, 0, 0, 0, 0, 0, 0, 0 }
  local old = redis.call('HGET', bucket, identity)
  if old then
    local i = 0
    for part in string.gmatch(old, '%S+') do
      i = i + 1
      sums[i] = tonumber(part)
    end
  end
  local parts = {}
  for i = 1, 9 do parts[i] = fmt(sums[i] + (added[i] or 0)) end
  redis.call('HSET', bucket, identity, table.concat(parts, ' '))
  redis.call('PEXPIRE', bucket, fmt((day + retentionDays - latest) * msPerDay))
end
`;

/**
 * Star-only globs of model allow-lists, as glob.ts matches them: the literal runs between stars
 * are found leftmost-first with plain finds, so no Lua pattern is built and no character is special.
 */
const MODEL_ALLOWED = `
local function globMatches(pattern, text)
  local firstStar = string.find(pattern, '*', 1, true)
  if not firstStar then return pattern == text end
  local lastStar = firstStar
  while true do
    local s = string.find(pattern, '*', lastStar + 1, true)
    if not s then break end
    lastStar = s
  end
  local head, tail = string.sub(pattern, 1, firstStar - 1), string.sub(pattern, lastStar + 1)
  if #head + #tail > #text then return false end
  if string.sub(text, 1, #head) ~= head then return false end
  if #tail > 0 and string.sub(text, #text - #tail + 1) ~= tail then return false end
  local textAt, limit, patternAt = #head + 1, #text - #tail, firstStar + 1
  while patternAt < lastStar do
    local nextStar = string.find(pattern, '*', patternAt, true)
    local literal = string.sub(pattern, patternAt, nextStar - 1)
    if #literal > 0 then
      local found = string.find(text, literal, textAt, true)
      if not found or found + #literal - 1 > limit then return false end
      textAt = found + #literal
    end
    patternAt = nextStar + 1
  end
  return true
end
local function modelAllowed(model, modelsJson)
  if not modelsJson then return true end
  local patterns = cjson.decode(modelsJson)
  if #patterns == 0 then return true end
  if not model then return false end
  for _, pattern in ipairs(patterns) do
    if globMatches(pattern, model) then return true end
  end
  return false
end
`;

/**
 * Admits one request: checks the model against the allow-lists and every limit of the key, its
 * team and its user and, when all pass, reserves the estimate and takes a parallel slot (a hold
 * that expires at `nowMs + holdMs`).
 * ARGV: prefix, keyId, cost, tokens, now, day, msToMidnight, reservationId, hasModel, model,
 * holdMs, recordTtlMs, toleranceUsd, budgetEpsilonUsd, parallelRetryAfterMs, retentionDays,
 * maxModelsPerRecord, otherModels, msPerDay. A reservation id whose settlement already came (a
 * tombstone: the admission landed late, after a fail-open request was settled) is answered ok and
 * reserves nothing.
 * Returns `{'not_found'}`, `{'ok', limit, remaining, reset}` or `{'refused', reason, subject,
 * retryAfter, limit, remaining, reset}`; `''` for an absent number.
 */
export const ADMIT_SCRIPT = `${HELPERS}${ACCOUNTING}${MODEL_ALLOWED}${SPEND}
local keyId = ARGV[2]
local cost, tokens, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local day, toMidnight, resId = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local holdMs, recordTtlMs, tolerance = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local budgetEpsilon, parallelRetry = tonumber(ARGV[14]), tonumber(ARGV[15])
local retentionDays, maxModels, otherModels, msPerDay = tonumber(ARGV[16]), tonumber(ARGV[17]), ARGV[18], tonumber(ARGV[19])
if redis.call('EXISTS', P .. 'settled:' .. resId) == 1 then return { 'ok', '', '', '' } end
if redis.call('EXISTS', P .. 'res:' .. resId) == 1 then return { 'duplicate' } end
local k = redis.call('HMGET', rk('key', nil, keyId), 'id', 'teamId', 'userId', 'budgetUsd', 'rpm', 'tpm',
  'maxParallel', 'dailyRequests', 'dailyTokens', 'models')
if not k[1] then return { 'not_found' } end
local model = nil
if ARGV[9] == '1' then model = ARGV[10] end

local function subject(kind, id, budget, rpm, tpm)
  local a = redis.call('HMGET', rk(kind, 'acct', id), 'spend', 'reserved', 'rpmTat', 'tpmTat')
  return { kind = kind, id = id, acct = rk(kind, 'acct', id), holds = rk(kind, 'holds', id),
    holdcost = rk(kind, 'holdcost', id), budget = tonumber(budget), rpm = tonumber(rpm), tpm = tonumber(tpm),
    spend = tonumber(a[1]) or 0, reserved = tonumber(a[2]) or 0, rpmTat = tonumber(a[3]) or 0,
    tpmTat = tonumber(a[4]) or 0 }
end
local subjects = { subject('key', keyId, k[4], k[5], k[6]), false, false }
local allowLists = { k[10], false, false }
if k[2] then
  local t = redis.call('HMGET', rk('team', nil, k[2]), 'id', 'budgetUsd', 'rpm', 'tpm', 'models')
  if t[1] then subjects[2], allowLists[2] = subject('team', k[2], t[2], t[3], t[4]), t[5] end
end
if k[3] then
  local u = redis.call('HMGET', rk('user', nil, k[3]), 'id', 'budgetUsd', 'rpm', 'tpm', 'models')
  if u[1] then subjects[3], allowLists[3] = subject('user', k[3], u[2], u[3], u[4]), u[5] end
end
local key = subjects[1]
-- The allow-lists first, read in this same step, so a PATCH of models is never half-seen.
for i = 1, 3 do
  if subjects[i] and not modelAllowed(model, allowLists[i] or nil) then
    return { 'refused', 'model', subjects[i].kind, '', '', '', '' }
  end
end

-- Holds whose time is up (their instance crashed, or its settlement never landed) stop holding
-- budget and slots, and are charged at their reservation: a request that may have been served is
-- never billed at nothing. A settlement that lands later replaces the charge by the real cost.
for i = 1, 3 do
  local s = subjects[i]
  if s then
    local expired = redis.call('ZRANGEBYSCORE', s.holds, '-inf', fmt(now), 'LIMIT', 0, 1000)
    if #expired > 0 then
      local costs = redis.call('HMGET', s.holdcost, unpack(expired))
      for j = 1, #expired do
        local held = tonumber(costs[j]) or 0
        s.reserved = s.reserved - held
        local resKey = P .. 'res:' .. expired[j]
        local r = redis.call('HMGET', resKey, 'keyId', 'teamId', 'userId', 'model', 'day')
        if r[1] then
          s.spend = s.spend + held
          redis.call('HSET', resKey, 'charged_' .. s.kind, '1')
          local slot = addModelSpend(s.kind, s.id, r[4], held, maxModels, otherModels)
          if s.kind == 'key' then
            addToBucket(tonumber(r[5]), r[1], r[2], r[3], slot, { held, 1 }, retentionDays, msPerDay)
          end
        end
      end
      redis.call('ZREM', s.holds, unpack(expired))
      redis.call('HDEL', s.holdcost, unpack(expired))
      if s.reserved < 0 or redis.call('ZCARD', s.holds) == 0 then s.reserved = 0 end
      redis.call('HSET', s.acct, 'reserved', fmt(s.reserved), 'spend', fmt(s.spend))
    end
  end
end

local function tightest()
  local best, bestShare = nil, math.huge
  for i = 1, 3 do
    local s = subjects[i]
    if s then
      if s.rpm then
        local state = windowState(s.rpmTat, now, s.rpm)
        if state[2] / s.rpm < bestShare then best, bestShare = state, state[2] / s.rpm end
      end
      if s.tpm then
        local state = windowState(s.tpmTat, now, s.tpm)
        if state[2] / s.tpm < bestShare then best, bestShare = state, state[2] / s.tpm end
      end
    end
  end
  return best
end
local function refusal(reason, kind, retryAfter, state)
  local reply = { 'refused', reason, kind, '', '', '', '' }
  if retryAfter then reply[4] = fmt(retryAfter) end
  if state then reply[5], reply[6], reply[7] = fmt(state[1]), fmt(state[2]), fmt(state[3]) end
  return reply
end

for i = 1, 3 do
  local s = subjects[i]
  if s and s.budget and s.spend + s.reserved + cost > s.budget + tolerance + budgetEpsilon then
    return refusal('budget', s.kind, nil, tightest())
  end
end

local d = redis.call('HMGET', key.acct, 'day', 'reqToday', 'tokToday')
local usageDay = tonumber(d[1])
local fresh = usageDay == nil or day > usageDay
local requestsToday, tokensToday = 0, 0
if not fresh then requestsToday, tokensToday = tonumber(d[2]) or 0, tonumber(d[3]) or 0 end
local dailyRequests, dailyTokens, maxParallel = tonumber(k[8]), tonumber(k[9]), tonumber(k[7])
if dailyRequests and requestsToday + 1 > dailyRequests then
  return refusal('daily_requests', 'key', toMidnight, tightest())
end
if dailyTokens and tokensToday + tokens > dailyTokens then
  local retryAfter = toMidnight
  if tokens > dailyTokens then retryAfter = nil end
  return refusal('daily_tokens', 'key', retryAfter, tightest())
end

-- Every window is evaluated, so a refusal can name the longest wait; nothing is written yet.
local nextRpm, nextTpm = {}, {}
local refused = nil
local function withWait(reason, kind, retryAfter, tat, limit)
  if not refused then
    refused = { reason = reason, kind = kind, retryAfter = retryAfter, state = windowState(tat, now, limit) }
  elseif refused.retryAfter and (retryAfter == nil or retryAfter > refused.retryAfter) then
    refused.retryAfter = retryAfter
  end
end
for i = 1, 3 do
  local s = subjects[i]
  if s then
    if s.rpm then
      local allowed, value = consume(s.rpmTat, 1, now, s.rpm)
      if allowed then nextRpm[i] = value
      else
        if value < 0 then value = nil end
        withWait('rpm', s.kind, value, s.rpmTat, s.rpm)
      end
    end
    if s.tpm then
      local allowed, value = consume(s.tpmTat, tokens, now, s.tpm)
      if allowed then nextTpm[i] = value
      else
        if value < 0 then value = nil end
        withWait('tpm', s.kind, value, s.tpmTat, s.tpm)
      end
    end
  end
end
if refused then return refusal(refused.reason, refused.kind, refused.retryAfter, refused.state) end

if maxParallel and redis.call('ZCARD', key.holds) >= maxParallel then
  return refusal('parallel', 'key', parallelRetry, tightest())
end

local expiresAt = fmt(now + holdMs)
for i = 1, 3 do
  local s = subjects[i]
  if s then
    s.reserved = s.reserved + cost
    local fields = { 'reserved', fmt(s.reserved) }
    if s.rpm then
      s.rpmTat = nextRpm[i]
      fields[#fields + 1] = 'rpmTat'
      fields[#fields + 1] = fmt(s.rpmTat)
    end
    if s.tpm then
      s.tpmTat = nextTpm[i]
      fields[#fields + 1] = 'tpmTat'
      fields[#fields + 1] = fmt(s.tpmTat)
    end
    redis.call('HSET', s.acct, unpack(fields))
    redis.call('ZADD', s.holds, expiresAt, resId)
    redis.call('HSET', s.holdcost, resId, fmt(cost))
  end
end
if fresh then redis.call('HSET', key.acct, 'day', fmt(day)) end
redis.call('HSET', key.acct, 'reqToday', fmt(requestsToday + 1), 'tokToday', fmt(tokensToday + tokens))

local resKey = P .. 'res:' .. resId
redis.call('HSET', resKey, 'keyId', keyId, 'cost', fmt(cost), 'tokens', fmt(tokens), 'day', fmt(day), 'at', fmt(now))
if subjects[2] then redis.call('HSET', resKey, 'teamId', subjects[2].id) end
if subjects[3] then redis.call('HSET', resKey, 'userId', subjects[3].id) end
if model then redis.call('HSET', resKey, 'model', model) end
redis.call('PEXPIRE', resKey, recordTtlMs)

local state = tightest()
if state then return { 'ok', fmt(state[1]), fmt(state[2]), fmt(state[3]) } end
return { 'ok', '', '', '' }
`;

/**
 * Replaces a reservation by the real cost, once. ARGV: prefix, reservationId, useReserved
 * (`1`: charge the reserved estimate, for a settlement that failed validation), cost,
 * promptTokens, completionTokens, now, hasModel, model, retentionDays, maxModelsPerRecord,
 * otherModels, msPerDay, then the token classes (cached, cache write, reasoning, audio prompt,
 * audio completion), then recordTtlMs. Returns 1 when it settled, 0 for an unknown or settled
 * reservation; an unknown one leaves a tombstone for `recordTtlMs`, so an admission that lands
 * after its settlement (a fail-open request) reserves nothing. A subject whose hold expired was
 * charged the reservation then: it is charged the difference now. A spend bucket's value is its
 * sums, space-separated: spend, requests, prompt, completion, then the classes (a bucket written
 * before the classes existed reads them as 0).
 */
export const SETTLE_SCRIPT = `${HELPERS}${ACCOUNTING}${SPEND}
local resId = ARGV[2]
local resKey = P .. 'res:' .. resId
local r = redis.call('HMGET', resKey, 'keyId', 'teamId', 'userId', 'model', 'cost', 'tokens', 'day', 'at',
  'charged_key', 'charged_team', 'charged_user')
if not r[1] then
  redis.call('SET', P .. 'settled:' .. resId, '1', 'PX', ARGV[19])
  return 0
end
redis.call('DEL', resKey)
local reservedCost, reservedTokens, reservedDay = tonumber(r[5]), tonumber(r[6]), tonumber(r[7])
local reservedModel = r[4]
local charged = { key = r[9], team = r[10], user = r[11] }
local cost, prompt, completion, now, model
local classes = { 0, 0, 0, 0, 0 }
if ARGV[3] == '1' then
  cost, prompt, completion, now = reservedCost, reservedTokens, 0, tonumber(r[8])
  if reservedModel then model = reservedModel end
else
  cost, prompt, completion, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  if ARGV[8] == '1' then model = ARGV[9] end
  for i = 1, 5 do classes[i] = tonumber(ARGV[13 + i]) end
end
local retentionDays, maxModels, otherModels = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12]
local msPerDay = tonumber(ARGV[13])
local tokenDelta = prompt + completion - reservedTokens

-- Returns the name the spend was kept under: the model, the overflow name, or nil.
local function settleAccount(kind, id)
  if redis.call('EXISTS', rk(kind, nil, id)) == 0 then return nil end
  local acct, holds = rk(kind, 'acct', id), rk(kind, 'holds', id)
  local a = redis.call('HMGET', acct, 'spend', 'reserved', 'tpmTat')
  local spend = (tonumber(a[1]) or 0) + cost
  -- A hold charged when it expired had its reservation billed: take it back for the real cost.
  if charged[kind] then
    spend = spend - reservedCost
    addModelSpend(kind, id, reservedModel, -reservedCost, maxModels, otherModels)
  end
  local fields = { 'spend', fmt(spend) }
  -- A hold that expired was already given back; it is never given back twice.
  if redis.call('ZREM', holds, resId) == 1 then
    redis.call('HDEL', rk(kind, 'holdcost', id), resId)
    local reserved = 0
    if redis.call('ZCARD', holds) > 0 then reserved = math.max(0, (tonumber(a[2]) or 0) - reservedCost) end
    fields[#fields + 1] = 'reserved'
    fields[#fields + 1] = fmt(reserved)
  end
  local tpm = tonumber(redis.call('HGET', rk(kind, nil, id), 'tpm'))
  if tpm and tokenDelta ~= 0 then
    fields[#fields + 1] = 'tpmTat'
    fields[#fields + 1] = fmt(adjust(tonumber(a[3]) or 0, tokenDelta, now, tpm))
  end
  redis.call('HSET', acct, unpack(fields))
  return addModelSpend(kind, id, model, cost, maxModels, otherModels)
end

local slot = settleAccount('key', r[1])
local keyAcct = rk('key', 'acct', r[1])
local d = redis.call('HMGET', keyAcct, 'day', 'tokToday')
if tonumber(d[1]) == reservedDay then
  redis.call('HSET', keyAcct, 'tokToday', fmt(math.max(0, (tonumber(d[2]) or 0) + tokenDelta)))
end
if r[2] then settleAccount('team', r[2]) end
if r[3] then settleAccount('user', r[3]) end

if charged.key then
  -- Take the reservation charged at expiry out of the bucket it went to.
  local reservedSlot = reservedModel
  local models = rk('key', 'models', r[1])
  if reservedSlot and redis.call('HEXISTS', models, reservedSlot) == 0 then reservedSlot = otherModels end
  addToBucket(reservedDay, r[1], r[2], r[3], reservedSlot, { -reservedCost, -1 }, retentionDays, msPerDay)
end
addToBucket(math.floor(now / msPerDay), r[1], r[2], r[3], slot,
  { cost, 1, prompt, completion, classes[1], classes[2], classes[3], classes[4], classes[5] },
  retentionDays, msPerDay)
return 1
`;

/**
 * Reads the spend buckets of the UTC days in `[fromDay, toDay]`. ARGV: prefix, fromDay or
 * `-inf`, toDay or `+inf`. Returns a flat list of identity/value pairs.
 */
export const SPEND_SCRIPT = `${HELPERS}
local out = {}
for _, day in ipairs(redis.call('ZRANGEBYSCORE', P .. 'spend.days', ARGV[2], ARGV[3])) do
  local entries = redis.call('HGETALL', P .. 'spend.day:' .. day)
  for i = 1, #entries do out[#out + 1] = entries[i] end
end
return out
`;

/**
 * The failed-auth limiter for one address. ARGV: prefix, address, now, max, windowMs,
 * maxTracked, mode (`read` | `record`). Reads and records both count as touches for the
 * least-recently-used bound. Returns `{blocked ('1' | '0'), retryAfterMs}`.
 */
export const AUTH_SCRIPT = `${HELPERS}
local address, now, max, windowMs = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxTracked, mode = tonumber(ARGV[6]), ARGV[7]
local failures, recent = P .. 'auth.failures', P .. 'auth.recent'
local stored = redis.call('HGET', failures, address)
local startMs, count
if stored then
  local v = {}
  for part in string.gmatch(stored, '%S+') do v[#v + 1] = tonumber(part) end
  startMs, count = v[1], v[2]
end
local function touch()
  redis.call('ZADD', recent, redis.call('INCR', P .. 'auth.seq'), address)
end
local function state()
  if count >= max then return { '1', fmt(startMs + windowMs - now) } end
  return { '0', '0' }
end
if mode == 'read' then
  if not stored then return { '0', '0' } end
  if now >= startMs + windowMs then
    redis.call('HDEL', failures, address)
    redis.call('ZREM', recent, address)
    return { '0', '0' }
  end
  touch()
  return state()
end
if not stored or now >= startMs + windowMs then
  if stored then
    redis.call('HDEL', failures, address)
    redis.call('ZREM', recent, address)
  end
  startMs, count = now, 0
  while redis.call('ZCARD', recent) >= maxTracked do
    local oldest = redis.call('ZPOPMIN', recent)
    redis.call('HDEL', failures, oldest[1])
  end
end
if count < max then count = count + 1 end
redis.call('HSET', failures, address, fmt(startMs) .. ' ' .. fmt(count))
touch()
return state()
`;

/**
 * What authenticating a request reads, in one round trip and without writing: the key with a hash
 * (`''` for none) and the failed-auth state of an address. ARGV: prefix, hash, address, now, max,
 * windowMs. Returns `{records, blocked ('1' | '0'), retryAfterMs}` where records holds the key
 * (as READ_SCRIPT returns it) or nothing.
 */
export const LOOKUP_SCRIPT = `${HELPERS}
local hash, address, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local max, windowMs = tonumber(ARGV[5]), tonumber(ARGV[6])
local found = {}
if hash ~= '' then
  local id = redis.call('GET', P .. 'hash:' .. hash)
  if id then
    local record = readRecord('key', id)
    if record then found[1] = record end
  end
end
local stored = redis.call('HGET', P .. 'auth.failures', address)
if stored then
  local v = {}
  for part in string.gmatch(stored, '%S+') do v[#v + 1] = tonumber(part) end
  if now < v[1] + windowMs and v[2] >= max then return { found, '1', fmt(v[1] + windowMs - now) } end
end
return { found, '0', '0' }
`;
