-- Lists the registry in one consistent snapshot. KEYS as register.lua.
-- ARGV: 1 owned-zset prefix.
-- Reply: {now ms, then per origin: server, JSON, last heartbeat ms, draining 0/1, streams owned}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local reply = {now}
for _, server in ipairs(redis.call('HKEYS', KEYS[1])) do
  reply[#reply + 1] = server
  reply[#reply + 1] = redis.call('HGET', KEYS[1], server)
  reply[#reply + 1] = redis.call('ZSCORE', KEYS[2], server) or '0'
  reply[#reply + 1] = redis.call('SISMEMBER', KEYS[5], server)
  reply[#reply + 1] = redis.call('ZCOUNT', ARGV[1] .. server, '(' .. now, '+inf')
end
return reply
