"""A stock redis-server in a Docker container, started through testcontainers.

The tests marked ``docker`` need a Docker engine and a local Redis image: ``bash
.ci/docker-setup.sh`` provides both (image ``agentmem-redis:7.0``; ``AGENTMEM_REDIS_IMAGE``
names another). They skip when no engine answers, or fail instead when
``AGENTMEM_REQUIRE_DOCKER=1`` (as the ``docker`` tox env should set), so that a broken setup
cannot pass as skipped.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from agentmem.testing.docker import (
    RedisContainerServer,
    docker_unavailable_reason,
    start_redis_container,
)

DEFAULT_IMAGE = "agentmem-redis:7.0"
IMAGE = os.environ.get("AGENTMEM_REDIS_IMAGE", DEFAULT_IMAGE)
START_TIMEOUT = 30.0


@pytest.fixture
def docker_engine() -> None:
    """Skip (or fail, with AGENTMEM_REQUIRE_DOCKER=1) when no Docker engine answers."""
    reason = docker_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("AGENTMEM_REQUIRE_DOCKER", "") not in ("", "0"):
        pytest.fail(f"AGENTMEM_REQUIRE_DOCKER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture
def redis_container(docker_engine: None) -> Iterator[RedisContainerServer]:
    """A Redis container for one test, removed afterwards."""
    server = start_redis_container(IMAGE, START_TIMEOUT)
    try:
        yield server
    finally:
        server.stop()


def _containers_from(image: str) -> set[str]:
    """Ids of this process's testcontainers containers (running or not) made from ``image``.

    Filtered on testcontainers' per-process session label, so that containers of other
    test processes (pytest-xdist workers) do not count.
    """
    import docker
    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID

    client = docker.from_env(timeout=10)
    try:
        found = client.containers.list(
            all=True, filters={"ancestor": image, "label": f"{LABEL_SESSION_ID}={SESSION_ID}"}
        )
        return {c.id for c in found}
    finally:
        client.close()


@pytest.mark.docker
async def test_set_get_and_version(redis_container: RedisContainerServer) -> None:
    """SET/GET through redis.asyncio reach the containerised server, whose INFO gives a version."""
    assert redis_container.url.startswith("redis://127.0.0.1:")
    client = aioredis.Redis.from_url(redis_container.url, socket_timeout=5)
    try:
        assert await client.set("agentmem:docker:key", "value") is True
        assert await client.get("agentmem:docker:key") == b"value"
        info = await client.info("server")
    finally:
        await client.aclose()
    version = str(info["redis_version"])
    assert version.count(".") == 2, version
    if IMAGE == DEFAULT_IMAGE:
        assert version.startswith("7.0."), version


@pytest.mark.docker
def test_stop_removes_container(redis_container: RedisContainerServer) -> None:
    """stop() removes the container, and a second stop() does nothing."""
    container_id = redis_container.container_id
    assert container_id in _containers_from(IMAGE)
    redis_container.stop()
    assert container_id not in _containers_from(IMAGE)
    redis_container.stop()


@pytest.mark.docker
def test_start_timeout_raises_and_cleans_up(docker_engine: None) -> None:
    """A deadline too short for PING raises RuntimeError and leaves no container behind."""
    before = _containers_from(IMAGE)  # the plugin's shared server may be one of them
    with pytest.raises(RuntimeError, match="could not be used"):
        start_redis_container(IMAGE, 0.001)
    assert _containers_from(IMAGE) == before


@pytest.mark.docker
def test_missing_image_is_reported_not_pulled(docker_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image absent from the engine raises RuntimeError at once instead of a pull."""
    monkeypatch.delenv("AGENTMEM_DOCKER_PULL", raising=False)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="not on the Docker engine"):
        start_redis_container("agentmem-redis:no-such-tag", START_TIMEOUT)
    assert time.monotonic() - started < 5.0


def test_unavailable_reason_for_missing_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DOCKER_HOST naming a socket that does not exist gives a reason at once."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/agentmem/docker.sock")
    started = time.monotonic()
    reason = docker_unavailable_reason()
    assert isinstance(reason, str)
    assert reason
    assert time.monotonic() - started < 1.0


def test_unavailable_reason_for_a_dead_engines_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A socket file left by a dead dockerd (what CI finds) gives a reason fast and leaks nothing."""
    path = tmp_path_factory.mktemp("dock") / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(str(path))  # the file stays; nothing will accept on it
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    started = time.monotonic()
    reason = docker_unavailable_reason()
    assert reason is not None
    assert "nothing accepts" in reason
    assert time.monotonic() - started < 1.0


@pytest.mark.docker
def test_plugin_shared_server_is_a_container(docker_engine: None, agentmem_server: Any) -> None:
    """With an engine and the image present, the plugin's shared server comes from testcontainers."""
    if agentmem_server.source != "docker" and os.environ.get("AGENTMEM_REQUIRE_DOCKER", "") in ("", "0"):
        pytest.skip(f"the plugin's image is not on this engine (server came from {agentmem_server.source})")
    assert agentmem_server.source == "docker"
    assert agentmem_server.flavor == "redis"
    assert agentmem_server.version_info >= (7, 0)
