--- The first attempt of an append: its operation id is new, so it cannot be in the log and
--- the log is neither read nor searched (append.lua, the retry, looks): the cost does not grow
--- with the log of a session appended to fast. The log: lib/append_push.lua.
--- KEYS: the history, the append log, then the keys whose TTL it refreshes too (context,
--- base, tombstone; none when this store's reads refreshed them less than the refresh bound
--- ago, agentmem/refresh.py: the history and the log, which it may create, always get theirs).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- Returns the history's length.

--- @include "lib/check_args"

--- @include "lib/append_args"

local history_key, log_key = KEYS[1], KEYS[2]
local log_size = redis.call('STRLEN', log_key)
if log_size % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. log_size .. ' bytes)')
end

--- @include "lib/append_push"

for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return length
