"""The Lua scripts of :class:`LangGraphStore`.

All keys of one LangGraphStore share the hash tag ``{lgs}`` under the store's prefix:
the index (a sorted set, lex order, of ``"<label>.<label>...\\0<key>"`` members, one per
item) and one hash per item (``v`` the JSON value, ``c``/``u`` created/updated times,
``t`` the item's TTL in ms, ``0`` for none). An item's own key expires natively; the
index member of an expired item is removed the next time a script meets it.

The sources are ``agentmem/integrations/langgraph/lua/store/*.lua`` (what each takes and
returns is at the top of its file).
"""

from __future__ import annotations

from agentmem.scripts import Script, load

__all__ = ["ITEM_DELETE", "ITEM_FETCH", "ITEM_PUT", "ITEM_TOUCH", "MEMBERS"]

_PACKAGE = "agentmem.integrations.langgraph"

#: Writes an item and indexes it.
ITEM_PUT = Script("langgraph_store_put", load("store/put", package=_PACKAGE), flags="")
#: Deletes an item and its index member.
ITEM_DELETE = Script("langgraph_store_delete", load("store/delete", package=_PACKAGE), flags="allow-oom")
#: Reads items, renewing their TTLs on request; drops the index members of items gone.
ITEM_FETCH = Script(
    "langgraph_store_fetch", load("store/fetch", package=_PACKAGE), flags="allow-oom", read_only=True
)
#: Renews items' own TTLs.
ITEM_TOUCH = Script(
    "langgraph_store_touch", load("store/touch", package=_PACKAGE), flags="allow-oom", read_only=True
)
#: Lists index members in lex order.
MEMBERS = Script(
    "langgraph_store_members", load("store/members", package=_PACKAGE), flags="allow-oom", read_only=True
)
