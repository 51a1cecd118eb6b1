--- Appends messages to a session's history, once per operation id: the retry of an append
--- (an attempt after one that may have reached the server), which looks for its id in the
--- log first; append_fresh.lua is the first attempt. The log: lib/append_push.lua.
--- KEYS: SessionKeys.appending (context, base, history, log, tombstone).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- Returns the history's length.

--- @include "lib/check_args"

--- @include "lib/append_args"

local history_key, log_key = KEYS[3], KEYS[4]

--- @include "lib/append_seen"

--- @include "lib/append_push"

for _, i in ipairs({1, 2, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return length
