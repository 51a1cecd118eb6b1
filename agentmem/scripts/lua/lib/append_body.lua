--- The body of append.lua and replay_append.lua.
--- KEYS: SessionKeys.appending (context, base, history, log, tombstone).
--- ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
--- The log is a string of 12-byte records, oldest first: an operation id (8 bytes) and the
--- server time it was applied (seconds, 4 bytes big-endian). A retry of an append the server
--- already applied (its reply lost to a reset or timeout) finds its id and pushes nothing
--- twice. An id stays while a retry of its operation can still arrive (window_ms, from the
--- store's retry and timeout options), and the newest @APPEND_LOG_IDS@ stay whatever their
--- age; ids leave by age, not by count, so any number of appends in flight is covered. The
--- log key itself expires window_ms after the last append: a session at rest keeps no log.
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 1, MAX_EXACT, 'max_history')
  or int_arg(4, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
local id = ARGV[3]
if #id ~= @OPERATION_ID_BYTES@ then
  return redis.error_reply('ERR agentmem: an operation id is @OPERATION_ID_BYTES@ bytes')
end
local log = redis.call('GET', KEYS[4]) or ''
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
local oldest = now - math.ceil(tonumber(ARGV[4]) / 1000)
local records = #log / 12
local drop = 0
while drop < records - (@APPEND_LOG_IDS@ - 1) do
  local a, b, c, d = string.byte(log, drop * 12 + 9, drop * 12 + 12)
  if ((a * 256 + b) * 256 + c) * 256 + d >= oldest then break end
  drop = drop + 1
end
local record = id .. string.char(math.floor(now / 16777216) % 256, math.floor(now / 65536) % 256,
  math.floor(now / 256) % 256, now % 256)
if drop > 0 then
  redis.call('SET', KEYS[4], string.sub(log, drop * 12 + 1) .. record)
else
  redis.call('APPEND', KEYS[4], record)
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
for _, i in ipairs({1, 2, 3, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return redis.call('LLEN', KEYS[3])
