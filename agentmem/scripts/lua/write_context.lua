--- KEYS: the session's merged-fields hash, base, history, tombstone (SessionKeys.core).
--- ARGV: see lib/write_head.lua.
---
--- The layout (see README "Storage layout"):
---   base   a string: the last save_context's version and whole context (one orjson object);
---   hash   the fields update_context merged since then, each prefixed with its version,
---          overriding the base's field of that name on read.
--- A save costs the server one SET (with the TTL), one DEL (of the hash, if any) and two
--- PEXPIREs; a read one GETEX and one HGETALL (read_session.lua). Only merged fields carry
--- versions of their own, which a journal replay needs.
--- The first write is a SET or HSET on purpose: on Redis 6.2 the OOM check applies only to
--- a script's first write, so past maxmemory it refuses the script before anything changed.

--- @include "lib/write_head"

local hash, base_key = KEYS[1], KEYS[2]
if mode == 'replace' then  -- the hot path: a save, as few calls as it takes
  local ttl = tonumber(ARGV[1]) > 0
  if ttl then
    redis.call('SET', base_key, prefix .. ARGV[4], 'PX', ARGV[1])
  else
    redis.call('SET', base_key, prefix .. ARGV[4], 'KEEPTTL')
  end
  redis.call('DEL', hash)
  if ttl then
    redis.call('PEXPIRE', KEYS[3], ARGV[1])
    redis.call('PEXPIRE', KEYS[#KEYS], ARGV[1])
  end
  return 1
end
migrate(hash, base_key)
if conditional and (version_of(redis.call('GETRANGE', base_key, 0, 7)) or -1) > v then
  return 0
end
if not replace then
  merge(hash)
else
  redis.call('SET', base_key, prefix .. ARGV[4], 'KEEPTTL')
  -- merged fields newer than this replay survive it; older ones go with the old base
  local flat = redis.call('HGETALL', hash)
  local drop = {}
  for i = 1, #flat, 2 do
    if not ((version_of(flat[i + 1]) or -1) > v) then drop[#drop + 1] = flat[i] end
  end
  for i = 1, #drop, 200 do
    redis.call('HDEL', hash, unpack(drop, i, math.min(i + 199, #drop)))
  end
end
if tonumber(ARGV[1]) > 0 then
  for _, i in ipairs({1, 2, 3, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
