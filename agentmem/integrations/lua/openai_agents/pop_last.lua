--- KEYS: the session's context, base, history, pop log, tombstone. ARGV: ttl_ms, op_id, window_ms.
--- Replies: {0} empty; {1, item} popped; {2, item} newest item is not a JSON object, left in place.
---
--- The operation id goes into the session's pop log (a sorted set) as a member
--- "pop:<id>" (looked up in O(log n) by every pop) beside "pop:<id>:<item>", so a retry
--- whose first attempt was applied (its reply lost) finds it and returns the same item
--- without popping another (the slower scan for the item runs only then). Ids leave the
--- log by age like the store's append ids (its window covers every retry of a call). The ZADD
--- is the first write on purpose: it grows memory, so on Redis 6.2 past maxmemory the script is refused
--- before anything changed (on Redis 7 / Valkey the #!lua line refuses it whole).

--- @include "lib/check_args"

local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(3, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
if ARGV[2] == '' or string.find(ARGV[2], '[^%w]') then
  return redis.error_reply('ERR agentmem: the operation id must be alphanumeric')
end
local mark = 'pop:' .. ARGV[2]
if redis.call('ZSCORE', KEYS[4], mark) then
  local cursor = '0'
  repeat
    local page = redis.call('ZSCAN', KEYS[4], cursor, 'MATCH', mark .. ':*', 'COUNT', 1000)
    cursor = page[1]
    if #page[2] > 0 then return {1, string.sub(page[2][1], #mark + 2)} end
  until cursor == '0'
  return redis.error_reply('ERR agentmem: pop ' .. ARGV[2] .. ' was applied but its item has left the log')
end
local item = redis.call('LINDEX', KEYS[3], -1)
if not item then return {0} end
local ok, value = pcall(cjson.decode, item)
if not ok or type(value) ~= 'table' or not string.find(item, '^%s*{') then return {2, item} end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local score = string.format('%.0f', now_us)
redis.call('ZADD', KEYS[4], score, mark .. ':' .. item, score, mark)
redis.call('RPOP', KEYS[3])
local cutoff = string.format('(%.0f', now_us - tonumber(ARGV[3]) * 1000)
local expired = redis.call('ZCOUNT', KEYS[4], '-inf', cutoff)
local drop = math.min(expired, redis.call('ZCARD', KEYS[4]) - @APPEND_LOG_IDS@)
if drop > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, drop - 1) end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return {1, item}
