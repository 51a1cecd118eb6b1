--- The ids of appends applied by a retry (retried_key, 12-byte records like the log's).
--- An append's first attempt does not look its id up in the log (its id is new), but it can
--- reach the server after its own retry did (its bytes held up on the way while the client
--- timed out and retried on another connection): it looks in this short string instead,
--- which holds only the ids retries applied (usually none: the key rarely exists).
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
