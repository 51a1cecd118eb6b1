--- KEYS: index, item, item, ... ARGV: refresh ("1": renew each found item's TTL), member, ...
--- (member i belongs to KEYS[i + 1]). Returns one {value, created, updated} or false per item;
--- the index members of items that are gone are removed.

local out = {}
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'v', 'c', 'u', 't')
  if fields[1] then
    out[#out + 1] = {fields[1], fields[2] or '', fields[3] or ''}
    if ARGV[1] == '1' and fields[4] and fields[4] ~= '0' then
      redis.call('PEXPIRE', KEYS[i], fields[4])
    end
  else
    out[#out + 1] = false
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
  end
end
return out
