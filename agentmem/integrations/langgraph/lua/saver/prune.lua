--- ARGV: strategy ("keep_latest" | "delete"). Returns how many checkpoints were deleted.

--- @include "lib/saver"

local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if ARGV[1] == 'delete' then
  redis.call('DEL', unpack(KEYS))
  return #members
end
if ARGV[1] ~= 'keep_latest' then
  return redis.error_reply('ERR agentmem: unknown prune strategy ' .. tostring(ARGV[1]))
end
-- Members sort by namespace, then checkpoint id: the last of each namespace is its latest.
local doomed = {}
local touched = {}
for i, m in ipairs(members) do
  local nxt = members[i + 1]
  if nxt and ns_of(nxt) == ns_of(m) then
    doomed[#doomed + 1] = m
    touched[ns_of(m)] = true
  end
end
return drop_and_collect(doomed, touched)
