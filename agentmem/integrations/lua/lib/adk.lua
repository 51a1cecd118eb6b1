--- Helpers shared by the ADK scripts (adk/*.lua): HSET of ARGV ranges in chunks of 200, the state
--- deltas' layout, and the TTLs: session keys (1-4) live ttl_ms, user/app state
--- profile_ttl_ms (0: never expire).
local META = '\255'
local function hset_range(key, first, last)
  --- chunks of 200: why in agentmem/scripts/lua/lib/migrate.lua
  for i = first, last, 200 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
  end
end
local function pairs_ok(count)
  return count % 2 == 0
end
-- The state deltas after the counts at ARGV[at] (session pairs) and ARGV[at + 1] (user
-- pairs): session items, user items, then app items to the end. ok is false when they do
-- not split into pairs, or app items come without the app key (KEYS[6]) or the reverse.
local function deltas(at)
  local ns, nu = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local first_app = at + 2 + ns + nu
  local na = #ARGV - first_app + 1
  local ok = pairs_ok(ns) and pairs_ok(nu) and na >= 0 and pairs_ok(na) and (na > 0) == (#KEYS == 6)
  return ok, ns, nu, first_app, na
end
-- Session state into KEYS[1], user state into KEYS[5], app state into KEYS[6].
local function write_deltas(at, ns, nu, first_app, na)
  if ns > 0 then hset_range(KEYS[1], at + 2, at + 1 + ns) end
  if nu > 0 then hset_range(KEYS[5], at + 2 + ns, at + 1 + ns + nu) end
  if na > 0 then hset_range(KEYS[6], first_app, #ARGV) end
end
-- Session keys (1-4) live ARGV[1] ms; user/app state (5-6) ARGV[2] ms when it is not 0.
local function expire(state_too)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  if ARGV[2] ~= '0' and state_too then
    for i = 5, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
  end
end
