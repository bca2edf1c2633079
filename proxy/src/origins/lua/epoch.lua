-- Prepended to register.lua, pick.lua and renew.lua.
-- The registry's generation: a string key without expiry, created with the registry and gone
-- only when Redis lost its data (restart without persistence, FLUSHALL, failover to an empty
-- node, eviction). A replica that finds another value than the one it last saw knows the
-- registry was lost and writes back the origins it heard (reseed.lua).
local function registry_epoch(key, now, nonce)
  local epoch = redis.call('GET', key)
  if not epoch then
    epoch = string.format('%d-%s', now, nonce)
    redis.call('SET', key, epoch)
  end
  return epoch
end
