--- KEYS: the keys to delete, then the tombstone (last). ARGV: version, tombstone_ttl_ms.
--- Returns how many keys were deleted. The tombstone keeps the newest delete's version,
--- so a journal replay older than it is dropped (write_context.lua, write_facts.lua, replay_append.lua).
--- allow-oom: deleting is how memory is freed, so it must work past maxmemory (the
--- tombstone is a few bytes); on Redis 6.2 the UNLINK is the first write, which the OOM
--- check lets through, and the SET after it.

--- @include "lib/check_args"

local bad = int_arg(1, 0, MAX_EXACT, 'version') or int_arg(2, 1, MAX_EXACT, 'tombstone_ttl_ms')
if bad then return bad end
local removed = redis.call('UNLINK', unpack(KEYS, 1, #KEYS - 1))
local tomb = KEYS[#KEYS]
local stored = redis.call('GET', tomb)
if not stored or tonumber(stored) < tonumber(ARGV[1]) then
  redis.call('SET', tomb, ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', tomb, ARGV[2])
end
return removed
