--- The arguments every append script takes (after replay_append.lua took out its version).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 1, MAX_EXACT, 'max_history')
  or int_arg(4, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
local id = ARGV[3]
if #id ~= @OPERATION_ID_BYTES@ then
  return redis.error_reply('ERR agentmem: an operation id is @OPERATION_ID_BYTES@ bytes')
end
