"""The Lua scripts of :class:`LangGraphStore`.

All keys of one LangGraphStore share the hash tag ``{lgs}`` under the store's prefix:
the index (a sorted set, lex order, of ``"<label>.<label>...\\0<key>"`` members, one per
item) and one hash per item (``v`` the JSON value, ``c``/``u`` created/updated times,
``t`` the item's TTL in ms, ``0`` for none, ``n`` how many vector documents it has). An
item's own key expires natively; the index member of an expired item is removed the next
time a script meets it.

A store with a search index keeps one hash per (item, indexed text), the item's vector
documents ``v:<ns>:<key>:<i>`` for ``i`` in ``1..n``: ``vec`` the FLOAT32 vector, ``f`` the
filter tags, ``m`` the item's index member, ``t`` the item's TTL (they expire with it).
The put and delete scripts take the vector keys they may touch as KEYS; when the item has
more vectors than the caller declared (another writer gave it more) they write nothing and
return ``-n``, and the caller sends the call again with ``n`` keys.
"""

from __future__ import annotations

from agentmem.scripts import LUA_INT_TEXT, Script

__all__ = ["ITEM_DELETE", "ITEM_FETCH", "ITEM_PUT", "ITEM_TOUCH", "MEMBERS"]

_CHECK = (
    LUA_INT_TEXT
    + """
"""
)

# KEYS: index, item, vector 1..K. ARGV: member, value JSON, now (ISO text), ttl_ms (0: never
# expires), n (vectors to write, <= K), the vectors' filter tags, vector 1..n (FLOAT32 bytes).
# Returns 1, or -old when the item has old > K vectors (nothing written).
ITEM_PUT = Script(
    "langgraph_store_put",
    _CHECK
    + """
local bad = int_text(ARGV[4], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
local n = tonumber(ARGV[5])
local declared = #KEYS - 2
local old = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if old > declared then return -old end
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'u', ARGV[3], 't', ARGV[4], 'n', ARGV[5])
redis.call('HSETNX', KEYS[2], 'c', ARGV[3])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
for i = 1, declared do
  if i <= n then
    redis.call('HSET', KEYS[i + 2], 'vec', ARGV[6 + i], 'f', ARGV[6], 'm', ARGV[1], 't', ARGV[4])
  else
    redis.call('DEL', KEYS[i + 2])
  end
end
for i = 2, n + 2 do
  if ARGV[4] ~= '0' then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  else
    redis.call('PERSIST', KEYS[i])
  end
end
return 1
""",
    flags="",
)

# KEYS: index, item, vector 1..K. ARGV: member. Returns 1 if the item existed, 0 if not, or
# -old when the item has old > K vectors (nothing deleted).
ITEM_DELETE = Script(
    "langgraph_store_delete",
    """
local old = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if old > #KEYS - 2 then return -old end
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return redis.call('DEL', KEYS[2])
""",
    flags="allow-oom",
)

# KEYS: index, item, item, ... ARGV: refresh ("1": renew each found item's TTL), member, ...
# (member i belongs to KEYS[i + 1]). Returns one {value, created, updated, ttl_ms, vectors}
# or false per item;
# the index members of items that are gone are removed.
ITEM_FETCH = Script(
    "langgraph_store_fetch",
    """
local out = {}
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'v', 'c', 'u', 't', 'n')
  if fields[1] then
    out[#out + 1] = {fields[1], fields[2] or '', fields[3] or '', fields[4] or '0', fields[5] or '0'}
    if ARGV[1] == '1' and fields[4] and fields[4] ~= '0' then
      redis.call('PEXPIRE', KEYS[i], fields[4])
    end
  else
    out[#out + 1] = false
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
  end
end
return out
""",
    flags="allow-oom",
    read_only=True,
)

# KEYS: item or vector document, ... Renews each one's own TTL (one without is left alone).
ITEM_TOUCH = Script(
    "langgraph_store_touch",
    """
for i = 1, #KEYS do
  local ttl = redis.call('HGET', KEYS[i], 't')
  if ttl and ttl ~= '0' then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return #KEYS
""",
    flags="allow-oom",
    read_only=True,
)

# KEYS: index. ARGV: min, max (ZRANGEBYLEX bounds), count. Members in lex order.
MEMBERS = Script(
    "langgraph_store_members",
    _CHECK
    + """
local bad = int_text(ARGV[3], 1, MAX_EXACT, 'count')
if bad then return bad end
return redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
""",
    flags="allow-oom",
    read_only=True,
)
