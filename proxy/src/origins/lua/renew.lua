-- Extends leases still held by the given owners in their current incarnation, and claims back
-- streams nobody holds any more (lease ran out, or Redis lost its data): the holder still relays
-- them to that origin, so the next pick must find them there.
-- KEYS: 1 incarnations (hash), 2 registry epoch (see epoch.lua), then the streams' owner keys.
-- ARGV: 1 lease ms, 2 owned-zset prefix, 3 the registry epoch the caller last reconciled with
--       ('' when it has seen none), 4 random integer (a new epoch's nonce), then per owner key:
--       stream (vhost/app/stream), token.
-- Reply: {epoch, 'stale', {}} when the registry was lost since the caller's epoch (nothing is
-- touched: the caller writes back the origins it knows first, or every lease would be lost),
-- else {epoch, 'ok', positions (1-based, among the owner keys) whose lease was lost}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local epoch = registry_epoch(KEYS[2], now, ARGV[4])
if ARGV[3] ~= '' and ARGV[3] ~= epoch then
  return {epoch, 'stale', {}}
end
local lease = tonumber(ARGV[1])
local lost = {}
for i = 3, #KEYS do
  local n = i - 2
  local stream, token = ARGV[3 + 2 * n], ARGV[4 + 2 * n]
  local cut = string.find(token, '\n', 1, true)
  local server = string.sub(token, 1, cut - 1)
  local current = redis.call('GET', KEYS[i])
  if (current == token or current == false)
      and redis.call('HGET', KEYS[1], server) == string.sub(token, cut + 1) then
    redis.call('SET', KEYS[i], token, 'PX', lease)
    redis.call('ZADD', ARGV[2] .. server, now + lease, stream)
  else
    lost[#lost + 1] = n
  end
end
return {epoch, 'ok', lost}
