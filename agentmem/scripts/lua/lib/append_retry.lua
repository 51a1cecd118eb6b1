--- The body of append.lua and replay_append.lua (KEYS: SessionKeys.appending; ARGV: see
--- lib/append_args.lua): a retry looks its id up in the log and, when it applies, records it
--- among the retried ids (KEYS[5]), where a late first attempt (append_fresh.lua) finds it.
--- @include "lib/append_args"

local history_key, log_key, retried_key = KEYS[3], KEYS[4], KEYS[5]

--- @include "lib/append_seen"

--- @include "lib/append_push"

add_record(retried_key, redis.call('STRLEN', retried_key))
for _, i in ipairs({1, 2, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return length
