--- No ARGV. Returns how many keys existed.

return redis.call('DEL', unpack(KEYS))
