--- seen_in(text, id): whether the 8-byte operation id is one of the 12-byte records of
--- `text` (the append log, or the ids retries applied; nil: none), at a record boundary.
local function seen_in(text, wanted)
  local at = 1
  while text do
    local found = string.find(text, wanted, at, true)
    if not found then return false end
    if found % 12 == 1 then return true end
    at = found + 1
  end
  return false
end
