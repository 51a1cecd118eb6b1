--- ARGV: ttl_ms, profile_ttl_ms, op_id, session_id, now, session_count, user_count, then
--- session_count session field/value items, user_count user items, the rest app items.
--- Returns 1 created (or this very create already applied), 0 the session exists.

--- @include "lib/check_args"

--- @include "lib/adk"

local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 0, MAX_EXACT, 'profile_ttl_ms')
  or int_arg(6, 0, MAX_EXACT, 'session_count') or int_arg(7, 0, MAX_EXACT, 'user_count')
if bad then return bad end
local ok, ns, nu, first_app, na = deltas(6)
if ARGV[3] == '' or not tonumber(ARGV[5]) or not ok then
  return redis.error_reply('ERR agentmem: adk_create needs an op id, a time and field/value pairs')
end
local meta = redis.call('HGET', KEYS[1], META)
if meta then
  if meta == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], META, ARGV[3])
write_deltas(6, ns, nu, first_app, na)
redis.call('UNLINK', KEYS[2], KEYS[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
expire(true)
return 1
