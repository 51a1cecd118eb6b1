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

The sources are ``agentmem/integrations/lua/adk/*.lua`` (what each takes and returns is at the
top of its file), with the helpers they share in ``lua/lib/adk.lua``.
"""

from __future__ import annotations

from agentmem.scripts import Script, load

__all__ = ["ADK_APPEND", "ADK_APP_STATE", "ADK_CREATE", "ADK_DELETE", "ADK_PRUNE", "ADK_READ"]

_PACKAGE = "agentmem.integrations"

#: Creates a session (with its initial state deltas), once per operation id.
ADK_CREATE = Script("adk_create", load("adk/create", package=_PACKAGE), flags="")
#: Appends an event and applies its state deltas, once per event id.
ADK_APPEND = Script("adk_append", load("adk/append", package=_PACKAGE), flags="")
#: Merges ``app:`` state on its own (a Redis Cluster: the app's state is in another slot).
ADK_APP_STATE = Script("adk_app_state", load("adk/app_state", package=_PACKAGE), flags="")
#: Reads a session: state, newest events, user state, last update.
ADK_READ = Script("adk_read", load("adk/read", package=_PACKAGE), flags="allow-oom", read_only=True)
#: Deletes a session (allow-oom: deleting frees memory).
ADK_DELETE = Script("adk_delete", load("adk/delete", package=_PACKAGE), flags="allow-oom")
#: Drops a user's index entry whose session expired.
ADK_PRUNE = Script("adk_prune", load("adk/prune", package=_PACKAGE), flags="allow-oom")
