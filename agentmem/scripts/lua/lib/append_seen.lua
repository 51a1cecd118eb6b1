--- Whether the operation id (id) is in the log (log_key) already: then the append was
--- applied (a retry whose first reply was lost) and the script returns the history's
--- length (history_key) without pushing anything. Sets log_size for lib/append_push.
local log = redis.call('GET', log_key) or ''
if #log % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. #log .. ' bytes)')
end
local at = 1
while true do
  local found = string.find(log, id, at, true)
  if not found then break end
  if found % 12 == 1 then return redis.call('LLEN', history_key) end
  at = found + 1
end
local log_size = #log
