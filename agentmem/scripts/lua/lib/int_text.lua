--- Every script checks its numeric arguments before its first write and answers with an
--- error reply, so a bad argument can never leave a write half done. ``int_arg`` returns
--- nil for a decimal integer in [low, high], else the error reply. Numbers go on to
--- commands as the caller's strings: Lua would print a large double as "1e+17".
--- Lua: ``int_text(text, low, high, name)`` returns an error reply unless ``text`` is an
--- integer in [low, high] (nil when it is); shared with the adapters' scripts.
local MAX_EXACT = @MAX_EXACT@
local function int_text(text, low, high, name)
  local value = text and string.match(text, '^%d+$') and tonumber(text)
  if not value or value < low or value > high then
    return redis.error_reply('ERR agentmem: ' .. name .. ' must be an integer in [' .. low .. ', '
      .. string.format('%.0f', high) .. '], got ' .. tostring(text))
  end
  return nil
end
