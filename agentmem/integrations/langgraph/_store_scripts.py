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

The sources are ``agentmem/integrations/langgraph/lua/store/*.lua`` (what each takes and
returns is at the top of its file).
"""

from __future__ import annotations

from agentmem.scripts import Script, load

__all__ = ["ITEM_DELETE", "ITEM_FETCH", "ITEM_PUT", "ITEM_TOUCH", "MEMBERS"]

_PACKAGE = "agentmem.integrations.langgraph"

#: Writes an item, indexes it and writes its vector documents.
ITEM_PUT = Script("langgraph_store_put", load("store/put", package=_PACKAGE), flags="")
#: Deletes an item, its index member and its vector documents.
ITEM_DELETE = Script("langgraph_store_delete", load("store/delete", package=_PACKAGE), flags="allow-oom")
#: Reads items, renewing their TTLs on request; drops the index members of items gone.
ITEM_FETCH = Script(
    "langgraph_store_fetch", load("store/fetch", package=_PACKAGE), flags="allow-oom", read_only=True
)
#: Renews items' (and vector documents') own TTLs.
ITEM_TOUCH = Script(
    "langgraph_store_touch", load("store/touch", package=_PACKAGE), flags="allow-oom", read_only=True
)
#: Lists index members in lex order.
MEMBERS = Script(
    "langgraph_store_members", load("store/members", package=_PACKAGE), flags="allow-oom", read_only=True
)
