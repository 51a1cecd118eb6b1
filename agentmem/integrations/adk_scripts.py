"""The Lua scripts behind ``agentmem.integrations.adk``: one per session-service operation.

Keys come from :meth:`agentmem.keys.KeySchema.adk_session` in the order of
:class:`~agentmem.keys.AdkSessionKeys` (state, events, event ids, the user's session
index, the user's ``user:`` state), then, only when the operation writes ``app:`` state,
the app's state hash. The first five share one hash tag; the app's state has its own
(see the module docstring of ``agentmem.integrations.adk`` for what that means on a
Redis Cluster).

A session's state hash always holds the field ``0xFF`` (a name no UTF-8 key can have)
with the id of the operation that created it, so an empty state is still "a session",
and a retried create that was already applied is recognised as its own.

Like every agentmem write script, the writes carry a ``#!lua`` line (via
:class:`~agentmem.scripts.Script`), so past ``maxmemory`` the server refuses them whole;
on Redis 6.2 each one's first write grows memory, so it is refused before anything changed.
"""

from __future__ import annotations

from agentmem.scripts import _CHECK_ARGS, Script

__all__ = ["ADK_APPEND", "ADK_APP_STATE", "ADK_CREATE", "ADK_DELETE", "ADK_PRUNE", "ADK_READ"]

# Helpers shared by the scripts below: HSET of ARGV ranges in chunks of 200, the state
# deltas' layout, and the TTLs: session keys (1-4) live ttl_ms, user/app state
# profile_ttl_ms (0: never expire).
_HELPERS = """
local META = '\\255'
local function hset_range(key, first, last)
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
"""

# ARGV: ttl_ms, profile_ttl_ms, op_id, session_id, now, session_count, user_count, then
# session_count session field/value items, user_count user items, the rest app items.
# Returns 1 created (or this very create already applied), 0 the session exists.
ADK_CREATE = Script(
    "adk_create",
    _CHECK_ARGS
    + _HELPERS
    + """
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 0, MAX_EXACT, 'profile_ttl_ms')
  or int_arg(6, 0, MAX_EXACT, 'session_count') or int_arg(7, 0, MAX_EXACT, 'user_count')
if bad then return bad end
local ok, ns, nu, first_app, na = deltas(6)
if ARGV[3] == '' or not tonumber(ARGV[5]) or not ok then
  return redis.error_reply('ERR agentmem: adk_create needs an op id, a time and field/value pairs')
end
local meta = redis.call('HGET', KEYS[1], META)
if meta then
  if meta == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], META, ARGV[3])
write_deltas(6, ns, nu, first_app, na)
redis.call('UNLINK', KEYS[2], KEYS[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
expire(true)
return 1
""",
    flags="",
)

# ARGV: ttl_ms, profile_ttl_ms, session_id, event_id, timestamp, event, session_count,
# user_count, then the state deltas as in ADK_CREATE (from ARGV[9]).
# Returns 1 appended, 0 an event with this id is already there (a retry, or the same
# event appended twice): nothing changed, -1 no such session: nothing written.
ADK_APPEND = Script(
    "adk_append",
    _CHECK_ARGS
    + _HELPERS
    + """
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 0, MAX_EXACT, 'profile_ttl_ms')
  or int_arg(7, 0, MAX_EXACT, 'session_count') or int_arg(8, 0, MAX_EXACT, 'user_count')
if bad then return bad end
local ok, ns, nu, first_app, na = deltas(7)
if ARGV[4] == '' or not tonumber(ARGV[5]) or not ok then
  return redis.error_reply('ERR agentmem: adk_append needs an event id, a time and field/value pairs')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('SADD', KEYS[3], ARGV[4])
write_deltas(7, ns, nu, first_app, na)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
expire(nu > 0 or na > 0)
return 1
""",
    flags="",
)

# On a Redis Cluster the app's state is in another slot than the session's keys, so a
# create or an event that writes ``app:`` keys writes them with this script, after the
# session's own script. KEYS: the app's state. ARGV: profile_ttl_ms (0: never expire), then
# field/value items. Merged per field with HSET, so applying it twice (a retry) changes
# nothing more. Returns 1.
ADK_APP_STATE = Script(
    "adk_app_state",
    _CHECK_ARGS
    + _HELPERS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'profile_ttl_ms')
if bad then return bad end
if #ARGV < 3 or not pairs_ok(#ARGV - 1) then
  return redis.error_reply('ERR agentmem: adk_app_state needs field/value pairs')
end
hset_range(KEYS[1], 2, #ARGV)
if ARGV[1] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
""",
    flags="",
)

# ARGV: refresh_ttl_ms (0: no refresh), session_id, event_count (0: none; the newest so many).
# Returns {0} when there is no such session, else {1, state, events, user state, last update}.
ADK_READ = Script(
    "adk_read",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms') or int_arg(3, 0, MAX_EXACT, 'event_count')
if bad then return bad end
local state = redis.call('HGETALL', KEYS[1])
if #state == 0 then return {0} end
local events = {}
if ARGV[3] ~= '0' then events = redis.call('LRANGE', KEYS[2], '-' .. ARGV[3], -1) end
local updated = redis.call('ZSCORE', KEYS[4], ARGV[2]) or '0'
if ARGV[1] ~= '0' then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return {1, state, events, redis.call('HGETALL', KEYS[5]), updated}
""",
    flags="allow-oom",
    read_only=True,
)

# ARGV: session_id. Returns 1 if the session was there. allow-oom: deleting frees memory.
ADK_DELETE = Script(
    "adk_delete",
    """
local removed = redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return removed > 0 and 1 or 0
""",
    flags="allow-oom",
)

# KEYS: the user's session index, the session's state. ARGV: session_id. Drops an index
# entry whose session expired (its state is gone), unless it was created again meanwhile.
ADK_PRUNE = Script(
    "adk_prune",
    """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
""",
    flags="allow-oom",
)
