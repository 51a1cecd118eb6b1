--- No ARGV. Returns {checkpoints hash, blobs hash, writes hash} as flat field/value lists.

return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
