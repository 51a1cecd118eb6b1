--- The first attempt of an append: its operation id is new, so the log is neither read nor
--- searched (append.lua, the retry, looks): the cost does not grow with the log of a session
--- appended to fast. Only the short string of ids that retries applied is looked at: this
--- attempt may reach the server after its own retry (lib/append_retry.lua). The log:
--- lib/append_push.lua.
--- KEYS: the history, the append log, the retried ids, then the keys whose TTL it refreshes
--- too (context, base, tombstone; none when this store's reads refreshed them less than the
--- refresh bound ago, agentmem/refresh.py: the history and the log, which it may create,
--- always get theirs).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- Returns the history's length.

--- @include "lib/check_args"

--- @include "lib/append_args"

--- @include "lib/id_lookup"

local history_key, log_key = KEYS[1], KEYS[2]
if seen_in(redis.call('GET', KEYS[3]), id) then return redis.call('LLEN', history_key) end
local log_size = redis.call('STRLEN', log_key)
if log_size % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. log_size .. ' bytes)')
end

--- @include "lib/append_push"

for i = 4, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return length
