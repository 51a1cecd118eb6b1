"""Replicated acknowledgements (``wait_replicas``): one ``WAIT`` per pipeline of writes.

Redis replicates asynchronously: a write the primary acknowledged can be lost when the
primary dies before a replica received it and that replica is promoted. With
``wait_replicas=N`` the store appends ``WAIT N timeout`` to every pipeline that carries a
write, on the same connection (``WAIT`` counts the replicas that acknowledged every write
that connection made so far), and acknowledges those writes only when at least ``N``
replicas did. Otherwise each write of the pipeline fails with
:class:`~agentmem.ReplicationTimeoutError`: it reached the primary, and is safe to repeat.
Reads in the same pipeline are not affected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentmem._translate import is_permission
from agentmem.calls import Call
from agentmem.errors import MemoryPermissionError, ReplicationTimeoutError

__all__ = ["Wait", "acknowledge", "carries_writes"]


@dataclass(frozen=True, slots=True)
class Wait:
    replicas: int
    timeout_ms: int

    @property
    def command(self) -> tuple[Any, ...]:
        return ("WAIT", self.replicas, self.timeout_ms)


#: Plain commands (no script) that change nothing: the store's plain reads (``load_history``'s
#: LRANGE, ``recall``'s HGETALL), the memories' and adapters' reads and searches. Every other
#: plain command a store or an adapter sends (LangGraph's UNLINK of a run index, a memory's
#: DEL, FT.CREATE) is a write, acknowledged like a script's.
_READ_COMMANDS = frozenset(
    {
        "ASKING",
        "CLUSTER",
        "EXISTS",
        "FT.INFO",
        "FT.SEARCH",
        "GET",
        "HGETALL",
        "HMGET",
        "INFO",
        "LRANGE",
        "MGET",
        "PING",
        "SCAN",
        "SMEMBERS",
        "ZRANGE",
    }
)


#: What a transaction may hold and still be a read: reads, and the TTL refreshes of a read
#: (a refresh needs no replica).
_TRANSACTION_READS = _READ_COMMANDS | {"PEXPIRE"}


def _writes(call: Call) -> bool:
    """Every script but a read (which refreshes TTLs only, needing no replica) changes data,
    the adapters' included, and so does every plain command but a known read, and every
    transaction with a command that is neither a read nor a refresh."""
    if call.script is not None:
        return not call.script.read_only
    if call.group:
        return any(str(command[0]).upper() not in _TRANSACTION_READS for command in call.group)
    return call.command.upper() not in _READ_COMMANDS


def carries_writes(calls: Sequence[Call]) -> bool:
    return any(_writes(call) for call in calls)


def acknowledge(wait: Wait, calls: Sequence[Call], replies: list[Any], acked: Any) -> list[Any]:
    """The replies with each applied write replaced by a ReplicationTimeoutError when
    fewer than ``wait.replicas`` replicas acknowledged (``acked``: the WAIT reply)."""
    if isinstance(acked, int) and acked >= wait.replicas:
        return replies
    if isinstance(acked, Exception) and is_permission(acked):
        return _refused(wait, calls, replies, acked)
    seen = acked if isinstance(acked, int) else f"an error ({acked})"
    out = list(replies)
    for i, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if _writes(call) and not isinstance(reply, Exception):
            out[i] = ReplicationTimeoutError(
                f"the write reached the primary but {seen} of the {wait.replicas} replicas "
                f"wait_replicas asks for acknowledged it within wait_timeout={wait.timeout_ms} ms; "
                "it is applied there and may be lost if that primary fails now: it is safe to repeat",
                replicas=acked if isinstance(acked, int) else 0,
                reply=reply,
            )
    return out


def _refused(wait: Wait, calls: Sequence[Call], replies: list[Any], refusal: Exception) -> list[Any]:
    """The ACL refused ``WAIT``: each applied write fails with MemoryPermissionError (a repeat
    cannot help, and the write is on the primary), the others keep their replies."""
    out = list(replies)
    for i, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if _writes(call) and not isinstance(reply, Exception):
            error = MemoryPermissionError(
                f"the write reached the primary but the server refused WAIT ({refusal}): "
                f"wait_replicas={wait.replicas} needs the rule `agentmem acl --wait-replicas ...` prints; "
                "it is applied on the primary, unacknowledged by any replica; not retried"
            )
            error.__cause__ = refusal
            error.applied = True
            out[i] = error
    return out
