-- Stores a heartbeat or a discovery refresh; a new incarnation of a known server drops the
-- streams it owned.
-- KEYS: 1 origins, 2 beats, 3 incarnations, 4 loads, 5 draining, 6 registry epoch
-- ARGV: 1 server, 2 origin JSON, 3 incarnation, 4 load, 5 owned-zset prefix,
--       6 forget-after ms, 7 registry size limit,
--       8 '' for a heartbeat; for a discovery refresh the draining flag '0' or '1',
--       9 random integer (a new epoch's nonce)
-- Reply: {'new'|'refreshed'|'restarted'|'full', now ms, registry epoch}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local epoch = registry_epoch(KEYS[6], now, ARGV[9])
local server = ARGV[1]
local refresh = ARGV[8] == '0' or ARGV[8] == '1'

-- Forget a few long-silent origins per heartbeat: bounded work, and the registry still empties.
for _, stale in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[6]), 'LIMIT', 0, 16)) do
  if stale ~= server then
    redis.call('HDEL', KEYS[1], stale)
    redis.call('ZREM', KEYS[2], stale)
    redis.call('HDEL', KEYS[3], stale)
    redis.call('HDEL', KEYS[4], stale)
    redis.call('SREM', KEYS[5], stale)
    redis.call('DEL', ARGV[5] .. stale)
  end
end

local function set_draining()
  if ARGV[8] == '1' then
    redis.call('SADD', KEYS[5], server)
  elseif ARGV[8] == '0' then
    redis.call('SREM', KEYS[5], server)
  end
end

-- Same ip and endpoints (decoded only: re-encoding with cjson would turn [] into {}).
local function same_addresses(a, b)
  if a.ip ~= b.ip then
    return false
  end
  for _, protocol in ipairs({'rtmp', 'http', 'api', 'rtc', 'srt'}) do
    local x, y = a.endpoints[protocol] or {}, b.endpoints[protocol] or {}
    if #x ~= #y then
      return false
    end
    for i = 1, #x do
      if x[i] ~= y[i] then
        return false
      end
    end
  end
  return true
end

local known = redis.call('HGET', KEYS[3], server)
local outcome = 'new'
if known == ARGV[3] then
  outcome = 'refreshed'
  if refresh then
    local stored = redis.call('HGET', KEYS[1], server)
    if stored and same_addresses(cjson.decode(stored), cjson.decode(ARGV[2])) then
      -- Discovery only extends liveness: the load figures a heartbeat stored stay.
      redis.call('ZADD', KEYS[2], now, server)
      set_draining()
      return {outcome, now, epoch}
    end
  end
elseif known then
  outcome = 'restarted'
  redis.call('DEL', ARGV[5] .. server)
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) then
  return {'full', now, epoch}
end
redis.call('HSET', KEYS[1], server, ARGV[2])
redis.call('HSET', KEYS[3], server, ARGV[3])
redis.call('HSET', KEYS[4], server, ARGV[4])
redis.call('ZADD', KEYS[2], now, server)
set_draining()
return {outcome, now, epoch}
