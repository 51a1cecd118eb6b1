--- Appends messages to a session's history, once per operation id: KEYS, ARGV and the log of
--- ids are described in lib/append_body.lua.

--- @include "lib/check_args"

--- @include "lib/append_body"
