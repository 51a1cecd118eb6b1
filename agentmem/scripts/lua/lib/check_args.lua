--- int_arg(i, low, high, name): int_text's check of ARGV[i].
--- @include "lib/int_text"

local function int_arg(i, low, high, name)
  return int_text(ARGV[i], low, high, name)
end
