-- Lists streams with a current lease. KEYS: 1 origins. ARGV: 1 owned-zset prefix.
-- Reply: flat {stream, server, lease expiry ms, ...}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local reply = {}
for _, server in ipairs(redis.call('HKEYS', KEYS[1])) do
  local owned = redis.call('ZRANGEBYSCORE', ARGV[1] .. server, '(' .. now, '+inf', 'WITHSCORES')
  for i = 1, #owned, 2 do
    reply[#reply + 1] = owned[i]
    reply[#reply + 1] = server
    reply[#reply + 1] = owned[i + 1]
  end
end
return reply
