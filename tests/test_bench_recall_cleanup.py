"""agentmem bench --recall cleans up after itself when a run fails."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from agentmem import SearchUnavailableError
from agentmem.bench.recall import _one_size
from agentmem.testing.server import EmbeddedServer


async def test_a_failed_recall_run_closes_every_connection_it_opened(
    agentmem_private_server: EmbeddedServer,
) -> None:
    """A --recall run that fails (no query engine) leaves no connection of its own open."""
    with pytest.raises(SearchUnavailableError) as failed:
        await _one_size(agentmem_private_server.url, 10, 1, 1, lambda message: None)
    observer = Redis.from_url(agentmem_private_server.url)
    try:
        clients = await observer.client_list()
    finally:
        await observer.aclose()
    assert failed.value is not None  # the failure (and its frames) still held here
    assert len(clients) == 1, clients  # the observer alone
