--- Layouts before 0.3 kept versions beside the values, in the hash itself: field "\255"
--- (the last replace's version; "0" or "1" when none), "\255\1" (the base object), "\254"
--- .. f (field f's version; "\254\255" a replace's in 0.1). Every such hash has "\255". A
--- write meeting one first rewrites it in this layout (the base to its own key, each field
--- prefixed with its version), keeping its TTL; reads decode both (codec.decode_fields).
--- During a rolling upgrade 0.2 writes into hashes 0.3 already wrote (its merge adds "\255"
--- back with HSETNX), so each field is decided on its own: a value that already carries a
--- version prefix (first byte 0, which no orjson text starts with) is 0.3's and stays as it
--- is; only 0.2's plain values are prefixed. 0.2's base replaces the base key only when it
--- is the newer save (a 0.3 save after it keeps its own).
--- The first write is a SET or HSET that grows memory (the OOM rule in agentmem.scripts' docstring).
--- Needs packed() and version_of() from lib/versions.lua, included before it.
local function migrate(hash, base_key)
  if redis.call('HEXISTS', hash, '\255') == 0 then return end
  local flat = redis.call('HGETALL', hash)
  local stored = {}
  for i = 1, #flat, 2 do stored[flat[i]] = flat[i + 1] end
  local replaced = math.max(tonumber(stored['\255']) or 0, tonumber(stored['\254\255']) or 0)
  local base = stored['\255\1']
  if base and base_key
      and (version_of(redis.call('GETRANGE', base_key, 0, 7)) or -1) < replaced then
    local ttl = redis.call('PTTL', hash)
    redis.call('SET', base_key, packed(replaced) .. base)
    if ttl > 0 then redis.call('PEXPIRE', base_key, ttl) end
  end
  local set, drop = {}, {}
  for name, value in pairs(stored) do
    local lead = string.byte(name, 1)
    if lead == 254 or lead == 255 then
      drop[#drop + 1] = name
    elseif not version_of(value) then
      set[#set + 1] = name
      set[#set + 1] = packed(tonumber(stored['\254' .. name]) or 0) .. value
    end
  end
  --- In chunks of 200: unpack() puts every value it returns on Lua's C stack, which holds at most
  --- 8000 (LUAI_MAXCSTACK in the servers' Lua 5.1), so a longer list would fail with "too many
  --- results to unpack"; 200 is even, so field/value pairs stay together. Every script that
  --- passes a list of unbounded length to redis.call does the same.
  for i = 1, #set, 200 do redis.call('HSET', hash, unpack(set, i, math.min(i + 199, #set))) end
  for i = 1, #drop, 200 do redis.call('HDEL', hash, unpack(drop, i, math.min(i + 199, #drop))) end
end
