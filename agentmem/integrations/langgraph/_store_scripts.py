"""The Lua scripts of :class:`LangGraphStore`.

All keys of one LangGraphStore share the hash tag ``{lgs}`` under the store's prefix:
the index (a sorted set, lex order, of ``"<label>.<label>...\\0<key>"`` members, one per
item) and one hash per item (``v`` the JSON value, ``c``/``u`` created/updated times,
``t`` the item's TTL in ms, ``0`` for none). An item's own key expires natively; the
index member of an expired item is removed the next time a script meets it.
"""

from __future__ import annotations

from agentmem.scripts import LUA_INT_TEXT, Script

__all__ = ["ITEM_DELETE", "ITEM_FETCH", "ITEM_PUT", "ITEM_TOUCH", "MEMBERS"]

_CHECK = (
    LUA_INT_TEXT
    + """
"""
)

# KEYS: index, item. ARGV: member, value JSON, now (ISO text), ttl_ms (0: never expires).
ITEM_PUT = Script(
    "langgraph_store_put",
    _CHECK
    + """
local bad = int_text(ARGV[4], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'u', ARGV[3], 't', ARGV[4])
redis.call('HSETNX', KEYS[2], 'c', ARGV[3])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  redis.call('PERSIST', KEYS[2])
end
return 1
""",
    flags="",
)

# KEYS: index, item. ARGV: member. Returns 1 if the item existed.
ITEM_DELETE = Script(
    "langgraph_store_delete",
    """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
""",
    flags="allow-oom",
)

# KEYS: index, item, item, ... ARGV: refresh ("1": renew each found item's TTL), member, ...
# (member i belongs to KEYS[i + 1]). Returns one {value, created, updated} or false per item;
# the index members of items that are gone are removed.
ITEM_FETCH = Script(
    "langgraph_store_fetch",
    """
local out = {}
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'v', 'c', 'u', 't')
  if fields[1] then
    out[#out + 1] = {fields[1], fields[2] or '', fields[3] or ''}
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

# KEYS: item, ... Renews each item's own TTL (an item without one is left alone).
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
