--- On a Redis Cluster the app's state is in another slot than the session's keys, so a
--- create or an event that writes ``app:`` keys writes them with this script, after the
--- session's own script. KEYS: the app's state. ARGV: profile_ttl_ms (0: never expire), then
--- field/value items. Merged per field with HSET, so applying it twice (a retry) changes
--- nothing more. Returns 1.

--- @include "lib/check_args"

--- @include "lib/adk"

local bad = int_arg(1, 0, MAX_EXACT, 'profile_ttl_ms')
if bad then return bad end
if #ARGV < 3 or not pairs_ok(#ARGV - 1) then
  return redis.error_reply('ERR agentmem: adk_app_state needs field/value pairs')
end
hset_range(KEYS[1], 2, #ARGV)
if ARGV[1] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
