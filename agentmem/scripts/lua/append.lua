--- Appends messages to a session's history, once per operation id: the retry of an append
--- (an attempt after one that may have reached the server), which looks for its id in the
--- log first, and records it among the retried ids when it applies (a late first attempt
--- then finds it there); append_fresh.lua is the first attempt. The log: lib/append_push.lua.
--- KEYS: SessionKeys.appending (context, base, history, log, retried ids, tombstone).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- Returns the history's length.

--- @include "lib/check_args"

--- @include "lib/append_retry"
