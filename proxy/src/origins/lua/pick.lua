-- Returns the live owner of a stream or claims the best live origin for it, atomically.
-- KEYS: 1 origins (hash server -> JSON), 2 beats (zset server -> ms), 3 incarnations (hash),
--       4 loads (hash), 5 draining (set), 6 the stream's owner key (string, PX lease),
--       7 registry epoch (see epoch.lua)
-- ARGV: 1 stream (vhost/app/stream), 2 origin TTL ms, 3 lease ms, 4 random integer for ties,
--       5 prefix of per-origin owned-stream zsets (shares the keys' hash tag, so same slot),
--       6 the registry epoch the caller last reconciled with ('' when it has seen none)
-- Reply: {epoch, kind, owner token, origin JSON, last heartbeat ms, previous owner},
--        {epoch, 'none'}, or {epoch, 'stale'}: the registry was lost since the caller's epoch
--        and nothing was claimed, so the caller can write back what it knows and claim back
--        the streams its sessions relay before a claim places one elsewhere.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local epoch = registry_epoch(KEYS[7], now, ARGV[4])
local alive_since = now - tonumber(ARGV[2])
local lease = tonumber(ARGV[3])

local function claim(server, token, kind, previous)
  redis.call('SET', KEYS[6], token, 'PX', lease)
  redis.call('ZADD', ARGV[5] .. server, now + lease, ARGV[1])
  return {epoch, kind, token, redis.call('HGET', KEYS[1], server), redis.call('ZSCORE', KEYS[2], server), previous}
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
    return {epoch, 'owned', current, redis.call('HGET', KEYS[1], server), beat, ''}
  end
  if ARGV[6] ~= '' and ARGV[6] ~= epoch then
    return {epoch, 'stale'}
  end
  redis.call('ZREM', ARGV[5] .. server, ARGV[1])
  previous = server
elseif ARGV[6] ~= '' and ARGV[6] ~= epoch then
  return {epoch, 'stale'}
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
  return {epoch, 'none'}
end
local chosen = best[(tonumber(ARGV[4]) % #best) + 1]
local kind = 'new'
if previous ~= '' then
  kind = 'failover'
end
return claim(chosen, chosen .. '\n' .. redis.call('HGET', KEYS[3], chosen), kind, previous)
