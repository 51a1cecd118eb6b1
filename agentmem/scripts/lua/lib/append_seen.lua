--- Whether the operation id (id) is in the log (log_key) already: then the append was
--- applied (a retry whose first reply was lost) and the script returns the history's
--- length (history_key) without pushing anything. Sets log_size for lib/append_push.
--- @include "lib/id_lookup"
local log = redis.call('GET', log_key) or ''
if #log % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. #log .. ' bytes)')
end
if seen_in(log, id) then return redis.call('LLEN', history_key) end
local log_size = #log
