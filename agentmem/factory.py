"""``open_store``: the store class picked from ``fallback``, for config-driven code.

The class is the choice (``AgentMemoryStore`` or ``JournaledStore``, each with the same
constructors); this factory only picks it, so code that reads its options from a file
or the environment need not branch on ``fallback`` itself.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from agentmem.journaled import JournaledStore
from agentmem.store import AgentMemoryStore

__all__ = ["open_store", "store_class"]


def store_class(fallback: str = "raise") -> type[AgentMemoryStore]:
    """The class implementing ``fallback`` (an unknown value is refused by the options
    check, with the valid ones named)."""
    return JournaledStore if fallback == "journal" else AgentMemoryStore


@overload
def open_store(
    target: str | Redis | RedisCluster, *, fallback: Literal["journal"], **options: Any
) -> JournaledStore: ...


@overload
def open_store(
    target: str | Redis | RedisCluster, *, fallback: Literal["raise"] = "raise", **options: Any
) -> AgentMemoryStore: ...


@overload
def open_store(target: str | Redis | RedisCluster, *, fallback: str, **options: Any) -> AgentMemoryStore: ...


def open_store(
    target: str | Redis | RedisCluster, *, fallback: str = "raise", **options: Any
) -> AgentMemoryStore:
    """``store_class(fallback).from_url(target, **options)`` for a URL, or
    ``store_class(fallback)(target, **options)`` for a client the caller owns."""
    cls = store_class(fallback)
    if isinstance(target, str):
        return cls.from_url(target, fallback=fallback, **options)
    return cls(target, fallback=fallback, **options)
