--- KEYS: item, ... Renews each item's own TTL (an item without one is left alone).

for i = 1, #KEYS do
  local ttl = redis.call('HGET', KEYS[i], 't')
  if ttl and ttl ~= '0' then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return #KEYS
