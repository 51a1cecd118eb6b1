--- ARGV: ttl_ms, n_checkpoint_items, n_blob_items, then the three hashes' field/value items
--- one after the other (the writes hash last). Merges them into the thread's keys.

--- @include "lib/saver"

local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms') or int_text(ARGV[2], 0, MAX_EXACT, 'n_checkpoints')
  or int_text(ARGV[3], 0, MAX_EXACT, 'n_blobs')
if bad then return bad end
local n_cp, n_blob = tonumber(ARGV[2]), tonumber(ARGV[3])
local cp, blob, w, members, wmembers = {}, {}, {}, {}, {}
for i = 4, 3 + n_cp do cp[#cp + 1] = ARGV[i] end
for i = 4 + n_cp, 3 + n_cp + n_blob do blob[#blob + 1] = ARGV[i] end
for i = 4 + n_cp + n_blob, #ARGV do w[#w + 1] = ARGV[i] end
if #cp == 0 then return 0 end
chunked('HSET', KEYS[2], cp)
if #blob > 0 then chunked('HSET', KEYS[3], blob) end
if #w > 0 then chunked('HSET', KEYS[4], w) end
for i = 1, #cp, 2 do
  local field = cp[i]
  local first = string.find(field, '\0', 1, true)
  if first and not string.find(field, '\0', first + 1, true) then members[#members + 1] = field end
end
for i = 1, #w, 2 do wmembers[#wmembers + 1] = 0; wmembers[#wmembers + 1] = w[i] end
local scored = {}
for _, m in ipairs(members) do scored[#scored + 1] = 0; scored[#scored + 1] = m end
chunked('ZADD', KEYS[1], scored)
if #wmembers > 0 then chunked('ZADD', KEYS[5], wmembers) end
refresh(ARGV[1])
return #members
