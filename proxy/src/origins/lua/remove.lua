-- Forgets an origin and the streams it owned. KEYS as register.lua.
-- ARGV: 1 server, 2 owned-zset prefix. Reply: 1 when the origin was known.
local server = ARGV[1]
local owned = ARGV[2] .. server
local known = redis.call('HDEL', KEYS[1], server)
redis.call('ZREM', KEYS[2], server)
redis.call('HDEL', KEYS[3], server)
redis.call('HDEL', KEYS[4], server)
redis.call('SREM', KEYS[5], server)
redis.call('DEL', owned)
return known
