--- The body of append.lua and replay_append.lua.
--- KEYS: SessionKeys.appending (context, base, history, log, tombstone).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- The log is a string of 12-byte records, oldest first: an operation id (8 bytes) and the
--- server time until which it is kept (seconds, 4 bytes big-endian): the time it was applied
--- plus its writer's window_ms. A retry of an append the server already applied (its reply
--- lost to a reset or timeout) finds its id and pushes nothing twice. An id stays while a
--- retry of its operation can still arrive (its own writer's window_ms, from that store's
--- retry and timeout options; a journaled store's covers the session TTL), whatever window
--- other writers of the session use, and the newest @APPEND_LOG_IDS@ stay whatever their age;
--- ids leave by age, not by count, so any number of appends in flight is covered. The log key
--- itself expires window_ms after the last append, or later if it was to live longer: its
--- expiry only grows, so a writer with a short window never cuts a longer one short. A session
--- at rest keeps no log.
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 1, MAX_EXACT, 'max_history')
  or int_arg(4, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
local id = ARGV[3]
if #id ~= @OPERATION_ID_BYTES@ then
  return redis.error_reply('ERR agentmem: an operation id is @OPERATION_ID_BYTES@ bytes')
end
local log = redis.call('GET', KEYS[4]) or ''
local log_ttl = redis.call('PTTL', KEYS[4])
if #log % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. #log .. ' bytes)')
end
local at = 1
while true do
  local found = string.find(log, id, at, true)
  if not found then break end
  if found % 12 == 1 then return redis.call('LLEN', KEYS[3]) end
  at = found + 1
end
--- chunks of 200: why in lib/migrate.lua
for i = 5, #ARGV, 200 do
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
redis.call('LTRIM', KEYS[3], '-' .. ARGV[2], -1)
local now = tonumber(redis.call('TIME')[1])
local records = #log / 12
--- Past its time, a record goes unless it is among the newest @APPEND_LOG_IDS@ (this one included).
local kept, dropped = {}, false
for r = 0, records - 1 do
  local a, b, c, d = string.byte(log, r * 12 + 9, r * 12 + 12)
  if r >= records - (@APPEND_LOG_IDS@ - 1) or ((a * 256 + b) * 256 + c) * 256 + d >= now then
    kept[#kept + 1] = string.sub(log, r * 12 + 1, r * 12 + 12)
  else
    dropped = true
  end
end
local until_s = now + math.ceil(tonumber(ARGV[4]) / 1000)
local record = id .. string.char(math.floor(until_s / 16777216) % 256,
  math.floor(until_s / 65536) % 256, math.floor(until_s / 256) % 256, until_s % 256)
if dropped then
  kept[#kept + 1] = record
  redis.call('SET', KEYS[4], table.concat(kept))
else
  redis.call('APPEND', KEYS[4], record)
end
local keep_ms = tonumber(ARGV[4])
if log_ttl > keep_ms then keep_ms = log_ttl end
redis.call('PEXPIRE', KEYS[4], string.format('%.0f', keep_ms))
for _, i in ipairs({1, 2, 3, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return redis.call('LLEN', KEYS[3])
