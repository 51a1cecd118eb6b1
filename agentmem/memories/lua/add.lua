--- KEYS: the memory's hash. ARGV: user (percent-encoded), text, tags (percent-encoded, joined
--- by ','), metadata JSON, created (ms since the epoch), vector (FLOAT32 bytes).
--- Stores the memory unless its key exists; returns false when it stored it, else the
--- stored {user, text, tags, meta, created} (the first write wins: a retried or repeated add
--- never stores two).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'user', 'text', 'tags', 'meta', 'created')
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'text', ARGV[2], 'tags', ARGV[3], 'meta', ARGV[4],
  'created', ARGV[5], 'vec', ARGV[6])
return false
