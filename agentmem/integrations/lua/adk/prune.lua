--- KEYS: the user's session index, the session's state. ARGV: session_id. Drops an index
--- entry whose session expired (its state is gone), unless it was created again meanwhile.

if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
