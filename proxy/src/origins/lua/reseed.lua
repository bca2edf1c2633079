-- Writes back origins a replica heard within the origin TTL after Redis lost the registry.
-- An origin the registry holds with a heartbeat at least as recent is left alone, so a real
-- heartbeat (or another replica's fresher memory) always wins and any number of replicas can
-- write back at once. A written-back origin keeps the age it had: it is alive exactly as long
-- as its last heartbeat allows, never longer.
-- KEYS as register.lua (1 origins, 2 beats, 3 incarnations, 4 loads, 5 draining)
-- ARGV: 1 owned-zset prefix, 2 origin TTL ms, 3 registry size limit,
--       then per origin: server, origin JSON, incarnation, load, age ms, draining '0'/'1'
-- Reply: the servers written back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local written = {}
for i = 4, #ARGV, 6 do
  local server, json, incarnation, load = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local age, draining = tonumber(ARGV[i + 4]), ARGV[i + 5]
  local beat = now - age
  local stored = redis.call('ZSCORE', KEYS[2], server)
  local write = false
  if age <= ttl then
    if stored then
      write = tonumber(stored) < beat
    else
      write = redis.call('HLEN', KEYS[1]) < limit
    end
  end
  if write then
    local known = redis.call('HGET', KEYS[3], server)
    if known and known ~= incarnation then
      -- As a heartbeat of a new incarnation: the streams of the old one are released.
      redis.call('DEL', ARGV[1] .. server)
    end
    redis.call('HSET', KEYS[1], server, json)
    redis.call('HSET', KEYS[3], server, incarnation)
    redis.call('HSET', KEYS[4], server, load)
    redis.call('ZADD', KEYS[2], beat, server)
    if draining == '1' then
      redis.call('SADD', KEYS[5], server)
    end
    written[#written + 1] = server
  end
end
return written
