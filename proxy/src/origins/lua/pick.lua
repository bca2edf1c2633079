-- Returns the live owner of a stream or claims the best live origin for it, atomically.
-- KEYS: 1 origins (hash server -> JSON), 2 beats (zset server -> ms), 3 incarnations (hash),
--       4 loads (hash), 5 draining (set), 6 the stream's owner key (string, PX lease)
-- ARGV: 1 stream (vhost/app/stream), 2 origin TTL ms, 3 lease ms, 4 random integer for ties,
--       5 prefix of per-origin owned-stream zsets (shares the keys' hash tag, so same slot)
-- Reply: {kind, owner token, origin JSON, last heartbeat ms, previous owner} or {'none'}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local alive_since = now - tonumber(ARGV[2])
local lease = tonumber(ARGV[3])

local function claim(server, token, kind, previous)
  redis.call('SET', KEYS[6], token, 'PX', lease)
  redis.call('ZADD', ARGV[5] .. server, now + lease, ARGV[1])
  return {kind, token, redis.call('HGET', KEYS[1], server), redis.call('ZSCORE', KEYS[2], server), previous}
end

local previous = ''
local current = redis.call('GET', KEYS[6])
if current then
  local cut = string.find(current, '\n', 1, true)
  local server = string.sub(current, 1, cut - 1)
  local beat = redis.call('ZSCORE', KEYS[2], server)
  if beat and tonumber(beat) >= alive_since
      and redis.call('HGET', KEYS[3], server) == string.sub(current, cut + 1) then
    -- Renewing costs writes; the lease holders' renewer keeps it fresh, so only top it up
    -- when less than half is left.
    if redis.call('PTTL', KEYS[6]) < lease / 2 then
      return claim(server, current, 'owned', '')
    end
    return {'owned', current, redis.call('HGET', KEYS[1], server), beat, ''}
  end
  redis.call('ZREM', ARGV[5] .. server, ARGV[1])
  previous = server
end

-- Rank live, non-draining origins: fewest owned streams, then lowest load; keep ties.
-- Draining flags and loads are read once, not per origin: a pick stays cheap with many origins.
local draining, loads = {}, {}
for _, server in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  draining[server] = true
end
local flat = redis.call('HGETALL', KEYS[4])
for i = 1, #flat, 2 do
  loads[flat[i]] = tonumber(flat[i + 1])
end
local best, best_count, best_load = {}, nil, nil
for _, server in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], alive_since, '+inf')) do
  if not draining[server] then
    local owned = ARGV[5] .. server
    redis.call('ZREMRANGEBYSCORE', owned, '-inf', now)
    local count = redis.call('ZCARD', owned)
    local load = loads[server] or 0
    if best_count == nil or count < best_count or (count == best_count and load < best_load) then
      best, best_count, best_load = {server}, count, load
    elseif count == best_count and load == best_load then
      best[#best + 1] = server
    end
  end
end
if #best == 0 then
  return {'none'}
end
local chosen = best[(tonumber(ARGV[4]) % #best) + 1]
local kind = 'new'
if previous ~= '' then
  kind = 'failover'
end
return claim(chosen, chosen .. '\n' .. redis.call('HGET', KEYS[3], chosen), kind, previous)
