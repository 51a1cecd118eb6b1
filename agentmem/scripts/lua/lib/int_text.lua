--- int_text(text, low, high, name): nil when text is a decimal integer in [low, high], else an
--- error reply naming the argument. Every script checks its numeric arguments this way before
--- its first write, so a bad argument can never leave a write half done. Numbers go on to
--- commands as the caller's strings: Lua would print a large double as "1e+17".
--- MAX_EXACT (2^53 - 1) is the largest integer a Lua number (a double) holds exactly.
local MAX_EXACT = @MAX_EXACT@
local function int_text(text, low, high, name)
  local value = text and string.match(text, '^%d+$') and tonumber(text)
  if not value or value < low or value > high then
    return redis.error_reply('ERR agentmem: ' .. name .. ' must be an integer in [' .. low .. ', '
      .. string.format('%.0f', high) .. '], got ' .. tostring(text))
  end
  return nil
end
