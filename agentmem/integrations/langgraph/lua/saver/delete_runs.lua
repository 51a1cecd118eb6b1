--- ARGV: ttl_ms, run id, ... Deletes every checkpoint of these runs (and its writes, and the
--- blobs no remaining checkpoint uses). Returns how many checkpoints were deleted.

--- @include "lib/saver"

local runs = {}
for i = 1, #ARGV do runs[ARGV[i]] = true end
local doomed = {}
local touched = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local run = redis.call('HGET', KEYS[2], m .. '\0r')
  if run and runs[run] then
    doomed[#doomed + 1] = m
    touched[ns_of(m)] = true
  end
end
return drop_and_collect(doomed, touched)
