"""The server's largest accepted argument (``proto-max-bulk-len``), checked before sending.

A server sent an argument longer than its ``proto-max-bulk-len`` does not answer with an
error: it resets the connection. Retried, that looks like an outage, feeds the breaker
and takes down every call pipelined beside it. So the store refuses such a value
before any I/O, with :class:`~agentmem.ContextTooLargeError`.

No server accepts less than 1 MiB, and ``max_value_bytes`` defaults to 1 MiB, so with
the default options no argument can pass any server's limit and this costs nothing.
A store allowed larger values asks the server once (``CONFIG GET``), and assumes the
default 512 MiB when the user may not run ``CONFIG``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from agentmem.errors import ContextTooLargeError, MemoryPermissionError

if TYPE_CHECKING:
    from agentmem.calls import Call
    from agentmem.retry import Retrier

__all__ = ["DEFAULT_BULK_LIMIT", "MIN_BULK_LIMIT", "BulkLimit"]

log = logging.getLogger("agentmem")

#: The smallest ``proto-max-bulk-len`` a server can be configured with.
MIN_BULK_LIMIT = 1024 * 1024
#: The server default, assumed when ``CONFIG GET`` is not allowed.
DEFAULT_BULK_LIMIT = 512 * 1024 * 1024


class BulkLimit:
    def __init__(self, client: Redis, retrier: Retrier) -> None:
        self._client = client
        self._retrier = retrier
        self.limit: int | None = None

    async def check(self, operation: str, calls: Sequence[Call]) -> None:
        """Raise :class:`ContextTooLargeError` if one argument is longer than the server takes."""
        largest = max(
            (len(arg) for call in calls for arg in call.arguments() if isinstance(arg, bytes)), default=0
        )
        if largest <= MIN_BULK_LIMIT:
            return
        limit = self.limit if self.limit is not None else await self._fetch(operation)
        if largest > limit:
            raise ContextTooLargeError(
                f"{operation}: one value encodes to {largest} bytes, over the server's "
                f"proto-max-bulk-len of {limit}; nothing was written (lower max_value_bytes "
                f"below it, or raise the server's limit)"
            )

    async def _fetch(self, operation: str) -> int:
        try:
            reply: dict[Any, Any] = await self._retrier.run(
                operation, lambda: self._client.config_get("proto-max-bulk-len")
            )
        except MemoryPermissionError:
            log.info("agentmem: CONFIG GET not allowed; assuming proto-max-bulk-len=%d", DEFAULT_BULK_LIMIT)
            reply = {}
        raw = reply.get(b"proto-max-bulk-len", reply.get("proto-max-bulk-len"))
        self.limit = int(raw) if raw is not None else DEFAULT_BULK_LIMIT
        return self.limit
