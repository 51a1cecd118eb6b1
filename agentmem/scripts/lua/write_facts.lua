--- KEYS: the user's facts hash, its tombstone. ARGV: see lib/write_head.lua (merge modes only).
--- Each fact is a field of the hash, prefixed with its version.

--- @include "lib/write_head"

if replace then return redis.error_reply('ERR agentmem: facts are only merged') end
migrate(KEYS[1], nil)
merge(KEYS[1])
if tonumber(ARGV[1]) > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
