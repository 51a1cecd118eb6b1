--- KEYS: index, checkpoints. ARGV: ns ("" with all_ns "1": every namespace), all_ns,
--- before (exclusive checkpoint id upper bound within one namespace; "" none), limit (0: all).
--- Returns {member, metadata, ...} newest first within a namespace.

--- @include "lib/saver"

local bad = int_text(ARGV[4], 0, MAX_EXACT, 'limit')
if bad then return bad end
local members
if ARGV[2] == '1' then
  members = redis.call('ZREVRANGE', KEYS[1], 0, -1)
else
  local ns = ARGV[1]
  local top = '(' .. ns .. '\1'
  if ARGV[3] ~= '' then top = '(' .. ns .. '\0' .. ARGV[3] end
  if ARGV[4] ~= '0' then
    members = redis.call('ZREVRANGEBYLEX', KEYS[1], top, '[' .. ns .. '\0', 'LIMIT', 0, ARGV[4])
  else
    members = redis.call('ZREVRANGEBYLEX', KEYS[1], top, '[' .. ns .. '\0')
  end
end
local out = {}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m .. '\0m') or false
end
return out
