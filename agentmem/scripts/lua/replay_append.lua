--- A journal's replay of an append: APPEND with the write's version as ARGV[4], taken out
--- before APPEND's body runs. A replay older than the session's last delete (its
--- tombstone, KEYS[#KEYS]) pushes nothing and returns -1.
--- KEYS: SessionKeys.appending (context, base, history, log, retried ids, tombstone).

--- @include "lib/check_args"

local bad_version = int_arg(4, 0, MAX_EXACT, 'version')
if bad_version then return bad_version end
local version = table.remove(ARGV, 4)
local deleted = redis.call('GET', KEYS[#KEYS])
if deleted and tonumber(deleted) > tonumber(version) then return -1 end

--- @include "lib/append_retry"
