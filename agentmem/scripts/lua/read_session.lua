--- KEYS: SessionKeys.core. ARGV: refresh_ttl_ms (0: no refresh), want_context (1/0),
--- history_count (0: none). Returns {merged fields (flat), base or nil, history items}.

--- @include "lib/check_args"

--- @include "lib/versions"

local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms') or int_arg(2, 0, 1, 'want_context')
  or int_arg(3, 0, MAX_EXACT, 'history_count')
if bad then return bad end
local fields, base, hist = {}, false, {}
local refresh = tonumber(ARGV[1]) > 0
if ARGV[2] == '1' then
  fields = redis.call('HGETALL', KEYS[1])
  -- a key just read as missing needs no refresh (one call fewer for most loads)
  if refresh and #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  if refresh then
    base = redis.call('GETEX', KEYS[2], 'PX', ARGV[1])
  else
    base = redis.call('GET', KEYS[2])
  end
  -- A base older than the tombstone outlived a delete that did not know it (a 0.2 process's
  -- delete_session, during a rolling upgrade): the session was deleted after that save.
  if base then
    local deleted = redis.call('GET', KEYS[#KEYS])
    if deleted and (version_of(base) or 0) < (tonumber(deleted) or 0) then base = false end
  end
elseif refresh then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
if tonumber(ARGV[3]) > 0 then hist = redis.call('LRANGE', KEYS[3], '-' .. ARGV[3], -1) end
if refresh then
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[#KEYS], ARGV[1])
end
return {fields, base, hist}
