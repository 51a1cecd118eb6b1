"""The Lua scripts of :class:`AgentMemorySaver`: each operation on a thread is one
script run over the thread's keys (one hash tag, one slot), so it is atomic.

KEYS of every thread script (see ``ThreadKeys``): index, checkpoints, blobs, writes,
write_index. A checkpoint is the member ``M = ns .. "\\0" .. checkpoint_id`` of the
index; in the checkpoints hash ``M`` holds its record, ``M.."\\0m"`` its metadata,
``M.."\\0v"`` its channel versions as JSON (so scripts can find its blobs) and
``M.."\\0r"`` its run id when it has one. A write ``W = M.."\\0"..task_id.."\\0"..idx``
is a field of the writes hash and a member of the write index.

Write scripts have no ``allow-oom`` flag: past ``maxmemory`` the server refuses them
whole. Their first write is an HSET (on Redis 6.2 the OOM check applies to a script's
first write only).

The sources are ``agentmem/integrations/langgraph/lua/saver/*.lua`` (what each takes and returns
is at the top of its file), with the helpers they share in ``lua/lib/saver.lua``.
"""

from __future__ import annotations

from agentmem.scripts import Script, load

__all__ = [
    "ADD_RUN",
    "COPY_INTO",
    "DELETE_RUNS",
    "DELETE_THREAD",
    "LIST",
    "PRUNE",
    "PUT",
    "PUT_WRITES",
    "READ",
    "READ_THREAD",
]

_PACKAGE = "agentmem.integrations.langgraph"

#: Writes a checkpoint, its metadata and its blobs.
PUT = Script("langgraph_put", load("saver/put", package=_PACKAGE), flags="")
#: Writes a checkpoint's pending writes.
PUT_WRITES = Script("langgraph_put_writes", load("saver/put_writes", package=_PACKAGE), flags="")
#: Reads a checkpoint (the namespace's latest, or a given one) with its blobs and writes.
READ = Script("langgraph_read", load("saver/read", package=_PACKAGE), flags="allow-oom", read_only=True)
#: Lists checkpoints with their metadata, newest first.
LIST = Script("langgraph_list", load("saver/list", package=_PACKAGE), flags="allow-oom", read_only=True)
#: Deletes a thread's keys (allow-oom: a delete frees memory).
DELETE_THREAD = Script(
    "langgraph_delete_thread", load("saver/delete_thread", package=_PACKAGE), flags="allow-oom"
)
#: Deletes every checkpoint of some runs, and the blobs no other uses.
DELETE_RUNS = Script("langgraph_delete_runs", load("saver/delete_runs", package=_PACKAGE), flags="allow-oom")
#: Keeps each namespace's latest checkpoint, or deletes them all.
PRUNE = Script("langgraph_prune", load("saver/prune", package=_PACKAGE), flags="allow-oom")
#: Reads a thread's three hashes whole (for a copy).
READ_THREAD = Script(
    "langgraph_read_thread", load("saver/read_thread", package=_PACKAGE), flags="allow-oom", read_only=True
)
#: Merges a copied thread's hashes into a thread's keys.
COPY_INTO = Script("langgraph_copy_into", load("saver/copy_into", package=_PACKAGE), flags="")
#: Adds a thread to a run's thread set.
ADD_RUN = Script("langgraph_add_run", load("saver/add_run", package=_PACKAGE), flags="")
