--- Pushes the messages (ARGV[5..]) to history_key, cut to max_history, and records the
--- operation id (id) in the log (log_key, log_size bytes long); the history's length ends in
--- `length`. Sets the TTLs of the history and the log (the caller sets the others').
--- The log is a string of 12-byte records, oldest first: an operation id (8 bytes) and the
--- server time until which it is kept (seconds, 4 bytes big-endian): the time it was applied
--- plus its writer's window_ms. A retry of an append the server already applied (its reply
--- lost to a reset or timeout) finds its id (lib/append_seen.lua) and pushes nothing twice. An
--- id stays while a retry of its operation can still arrive (its own writer's window_ms, from
--- that store's retry and timeout options; a journaled store's covers the session TTL),
--- whatever window other writers of the session use, and the newest @APPEND_LOG_IDS@ stay
--- whatever their age; ids leave by age, not by count, so any number of appends in flight is
--- covered. The log key itself expires window_ms after the last append, or later if it was to
--- live longer: its expiry only grows, so a writer with a short window never cuts a longer one
--- short. A session at rest keeps no log.
--- chunks of 200: why in lib/migrate.lua
local length
for i = 5, #ARGV, 200 do
  length = redis.call('RPUSH', history_key, unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
redis.call('LTRIM', history_key, '-' .. ARGV[2], -1)
--- RPUSH's reply, cut to max_history, is the length after the trim (no LLEN)
if length == nil then
  length = redis.call('LLEN', history_key)
elseif length > tonumber(ARGV[2]) then
  length = tonumber(ARGV[2])
end
redis.call('PEXPIRE', history_key, ARGV[1])
local now = tonumber(redis.call('TIME')[1])
local function until_of(record_start, text)
  local a, b, c, d = string.byte(text, record_start + 8, record_start + 11)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local until_s = now + math.ceil(tonumber(ARGV[4]) / 1000)
local record = id .. string.char(math.floor(until_s / 16777216) % 256,
  math.floor(until_s / 65536) % 256, math.floor(until_s / 256) % 256, until_s % 256)
local function power_of_two(n)
  while n > 1 and n % 2 == 0 do n = n / 2 end
  return n == 1
end
--- add_record(key, size): appends `record` to a string of 12-byte records (`size` bytes
--- long now): the log, or the ids of retried appends. Past its time, a record goes unless it
--- is among the newest @APPEND_LOG_IDS@ (this one included). The string is read and swept
--- when its oldest record is past its time (records are appended in time order, so while
--- the oldest is live so are the others of its window), and when its length is a power of
--- two: a record of a longer window ahead of shorter ones (a journaled writer of the same
--- session) then holds them only until the string doubles. So an append costs the same
--- however long the log of a session appended to fast (a sweep per doubling is a constant
--- per append), and no record is dropped before its time. The key expires window_ms after
--- this append, or later if it was to live longer: its expiry only grows.
local function add_record(key, size)
  local ttl = redis.call('PTTL', key)
  local records = size / 12
  if records >= @APPEND_LOG_IDS@ and (power_of_two(records)
      or until_of(1, redis.call('GETRANGE', key, 0, 11)) < now) then
    local old = redis.call('GET', key)
    local kept = {}
    for r = 0, records - 1 do
      if r >= records - (@APPEND_LOG_IDS@ - 1) or until_of(r * 12 + 1, old) >= now then
        kept[#kept + 1] = string.sub(old, r * 12 + 1, r * 12 + 12)
      end
    end
    kept[#kept + 1] = record
    redis.call('SET', key, table.concat(kept))
  else
    redis.call('APPEND', key, record)
  end
  local keep_ms = tonumber(ARGV[4])
  if ttl > keep_ms then keep_ms = ttl end
  redis.call('PEXPIRE', key, string.format('%.0f', keep_ms))
end
add_record(log_key, log_size)
