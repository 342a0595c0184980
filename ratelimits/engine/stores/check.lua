-- One rate-limit check, atomically: this API's own limit, the policy epoch, the idempotency
-- key, every matching policy (all admit or none consumes), and the receipt facts.
-- Mirrors ratelimits/engine/algorithms.py and stores/base.py:run_check line for line.
--
-- KEYS: 1 epoch, 2 idempotency, 3 receipt stream, 4 API limit, 5.. one per policy limit.
--       (Unused slots repeat KEYS[1]; every key carries the same {tenant} hash tag.)
-- ARGV: 1 now ms ('' = Redis TIME), 2 dry run '1'/'0', 3 expected epoch ('' = none),
--       4 idempotency fingerprint ('' = none), 5 idempotency ttl ms, 6 receipt id ('' = none),
--       7 receipt facts, 8 receipt stream ttl ms, 9 API limit present '1'/'0',
--       10 number of policy limits, 11 store the idempotent result: '1' always, '2' only
--       when admitted, then 8 fields per limit (API limit first when present):
--       algorithm (1 fixed, 2 sliding log, 3 token, 4 leaky), n, L, B, window ms,
--       unit (units per request), drain (units per ms), shadow '1'/'0'.
-- Returns one text (cheap to build here and to parse in Python, unlike nested arrays):
--   'code,now,epoch,allowed,xlen|api item|item;item;...|stored'
--   item = 'allowed,remaining,reset ms,retry ms,delay ms'; epoch -1 = not asked; code 0
--   decided, 1 API limited, 2 stale epoch, 3 replayed (stored = the first decision),
--   4 idempotency mismatch. A decision is stored (receipts) as
--   'now,allowed|api item|items|receipt id', and under the idempotency key as
--   'fingerprint\ndecision\nfacts'. Every number is an integer below 2^53.

local function floordiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ceildiv(a, b)
  return -floordiv(-a, b)
end

local function fmt(x)
  return string.format('%d', x)
end

-- string.format('%d') is far cheaper than tostring/.. on numbers (no %.14g round trip).
local function item_text(t)
  return string.format('%d,%d,%d,%d,%d', t[1], t[2], t[3], t[4], t[5])
end

local function items_text(items)
  local texts = {}
  for i = 1, #items do texts[i] = item_text(items[i]) end
  return table.concat(texts, ';')
end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end

-- Returns the item and the write to make if the check consumes.
local function evaluate(key, base)
  local alg = tonumber(ARGV[base])
  local n = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local window = tonumber(ARGV[base + 4])
  local unit = tonumber(ARGV[base + 5])
  local drain = tonumber(ARGV[base + 6])

  if alg == 1 then
    local start = floordiv(now, window) * window
    local stop = start + window
    local count = 0
    local v = redis.call('GET', key)
    if v then
      local s, c = string.match(v, '^(%-?%d+):(%d+)$')
      if s and tonumber(s) == start then
        count = tonumber(c)
      end
    end
    local ok = count + n <= limit
    local after = count
    if ok then after = count + n end
    local remaining = limit - after
    if remaining < 0 then remaining = 0 end
    local retry = 0
    if not ok then retry = stop - now end
    return {ok and 1 or 0, remaining, stop, retry, 0},
      {1, key, fmt(start) .. ':' .. fmt(after), stop - now}
  end

  if alg == 2 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - window))
    local count = redis.call('ZCARD', key)
    local ok = count + n <= limit
    local reset, remaining
    if ok then
      local oldest = now
      if count > 0 then
        oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
      end
      reset = oldest + window
      remaining = limit - count - n
    else
      local must = count + n - limit
      if count == 0 then
        reset = now + window
      else
        local idx = must - 1
        if must > count then idx = count - 1 end
        reset = tonumber(redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')[2]) + window
      end
      remaining = limit - count
      if remaining < 0 then remaining = 0 end
    end
    local retry = 0
    if not ok then retry = reset - now end
    return {ok and 1 or 0, remaining, reset, retry, 0}, {2, key, n, window}
  end

  local level = 0
  local v = redis.call('GET', key)
  if v then
    local s, u, t = string.match(v, '^(%d+):(%d+):(%-?%d+)$')
    if s then
      level = tonumber(s)
      u = tonumber(u)
      t = tonumber(t)
      if u ~= unit then level = ceildiv(level * unit, u) end
      local elapsed = now - t
      if elapsed > 0 then
        level = level - elapsed * drain
        if level < 0 then level = 0 end
      end
    end
  end
  local need = n * unit
  local cap = (limit + burst) * unit
  local ok = level + need <= cap
  local after = level
  if ok then after = level + need end
  local retry = 0
  if not ok then
    if need > cap then
      retry = ceildiv(after, drain)
    else
      retry = ceildiv(level + need - cap, drain)
    end
  end
  local delay = 0
  if ok and alg == 4 then delay = ceildiv(level, drain) end
  local drained = ceildiv(after, drain)
  local remaining = floordiv(cap - after, unit)
  if remaining < 0 then remaining = 0 end
  local ttl = drained
  if ttl < 1 then ttl = 1 end
  return {ok and 1 or 0, remaining, now + drained, retry, delay},
    {1, key, fmt(after) .. ':' .. fmt(unit) .. ':' .. fmt(now), ttl}
end

-- Keys outlive their state by a second: Redis expires by its own wall clock, and a state read
-- a moment after it became irrelevant is still decided right (a window start is compared, a
-- level drains, old log entries are removed), whereas a key gone early would forget counts
-- (an injected clock, or a check a millisecond before a window ends on a busy server).
local SLACK_MS = 1000

local function apply(op)
  if op[1] == 1 then
    redis.call('SET', op[2], op[3], 'PX', fmt(op[4] + SLACK_MS))
    return
  end
  -- A sliding log: n unique members at score now (suffixes continue those already at now).
  local key, n, window = op[2], op[3], op[4]
  local base = redis.call('ZCOUNT', key, fmt(now), fmt(now))
  local stamp = fmt(now)
  local args = {}
  for i = 0, n - 1 do
    args[#args + 1] = stamp
    args[#args + 1] = stamp .. '-' .. (base + i)
    if #args >= 1000 then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('ZADD', key, unpack(args)) end
  redis.call('PEXPIRE', key, fmt(window + SLACK_MS))
end

local function reply(code, epoch, allowed, xlen, api, items, stored)
  local api_text = ''
  if api ~= 0 then api_text = item_text(api) end
  return string.format('%d,%d,%d,%d,%d|', code, now, epoch, allowed, xlen) .. api_text .. '|'
    .. items_text(items) .. '|' .. stored
end

local nitems = tonumber(ARGV[10])
local pos = 12
local api_item = 0
local api_op = nil
if ARGV[9] == '1' then
  api_item, api_op = evaluate(KEYS[4], pos)
  pos = pos + 8
  if api_item[1] == 0 then
    return reply(1, -1, 0, 0, api_item, {}, '')
  end
end

local epoch = -1
if ARGV[3] ~= '' then
  epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
  if epoch ~= tonumber(ARGV[3]) then
    return reply(2, epoch, 0, 0, 0, {}, '')
  end
end

local fingerprint = ARGV[4]
if fingerprint ~= '' then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    if api_op then apply(api_op) end
    local head = fingerprint .. '\n'
    if string.sub(stored, 1, #head) == head then
      return reply(3, epoch, 0, 0, api_item, {}, string.sub(stored, #head + 1))
    end
    return reply(4, epoch, 0, 0, api_item, {}, '')
  end
end

local items, ops = {}, {}
local allowed = 1
for i = 1, nitems do
  local base = pos + (i - 1) * 8
  local item, op = evaluate(KEYS[4 + i], base)
  items[i] = item
  ops[i] = op
  if item[1] == 0 and ARGV[base + 7] ~= '1' then allowed = 0 end
end
if allowed == 1 and ARGV[2] ~= '1' then
  for i = 1, nitems do
    if items[i][1] == 1 then apply(ops[i]) end
  end
end
if api_op then apply(api_op) end

local receipt_id = ARGV[6]
local xlen = 0
if fingerprint ~= '' or receipt_id ~= '' then
  local api_text = ''
  if api_item ~= 0 then api_text = item_text(api_item) end
  local decided = string.format('%d,%d|', now, allowed) .. api_text .. '|' .. items_text(items)
    .. '|' .. receipt_id
  if fingerprint ~= '' and (ARGV[11] == '1' or allowed == 1) then
    redis.call('SET', KEYS[2], fingerprint .. '\n' .. decided .. '\n' .. ARGV[7], 'PX', ARGV[5])
  end
  if receipt_id ~= '' then
    redis.call('XADD', KEYS[3], '*', 'rid', receipt_id, 'facts', ARGV[7], 'result', decided,
      'ts', fmt(now))
    redis.call('PEXPIRE', KEYS[3], ARGV[8])
    xlen = redis.call('XLEN', KEYS[3])
  end
end
return reply(0, epoch, allowed, xlen, api_item, items, '')
