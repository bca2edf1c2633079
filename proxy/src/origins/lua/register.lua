-- Stores a heartbeat; a new incarnation of a known server drops the streams it owned.
-- KEYS: 1 origins, 2 beats, 3 incarnations, 4 loads, 5 draining
-- ARGV: 1 server, 2 origin JSON, 3 incarnation, 4 load, 5 owned-zset prefix,
--       6 forget-after ms, 7 registry size limit
-- Reply: {'new'|'refreshed'|'restarted'|'full', now ms}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local server = ARGV[1]

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

local known = redis.call('HGET', KEYS[3], server)
local outcome = 'new'
if known == ARGV[3] then
  outcome = 'refreshed'
elseif known then
  outcome = 'restarted'
  redis.call('DEL', ARGV[5] .. server)
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) then
  return {'full', now}
end
redis.call('HSET', KEYS[1], server, ARGV[2])
redis.call('HSET', KEYS[3], server, ARGV[3])
redis.call('HSET', KEYS[4], server, ARGV[4])
redis.call('ZADD', KEYS[2], now, server)
return {outcome, now}
