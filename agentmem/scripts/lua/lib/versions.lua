--- Versions: packed(v) is v as the 8-byte prefix, version_of(value) a stored value's version
--- (nil without one). Every write carries its writer's clock in microseconds (an integer below
--- 2**53). A stored value carries the version of the write that stored it as an 8-byte
--- big-endian prefix; its first byte is 0, which no orjson text starts with, so a value
--- without one is told apart (an older layout's, see lib/migrate.lua).
local function packed(v)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = v % 256
    v = (v - bytes[i]) / 256
  end
  return string.char(unpack(bytes))
end
local function version_of(value)
  if not value or #value < 8 or string.byte(value, 1) ~= 0 then return nil end
  local v = 0
  for _, byte in ipairs({string.byte(value, 1, 8)}) do v = v * 256 + byte end
  return v
end
