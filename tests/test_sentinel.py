"""Redis Sentinel: the store finds the primary through the sentinels and follows a failover.

Each test gets its own group (primary, replica, three sentinels; ``agentmem_sentinel``),
with ``down-after-milliseconds`` at 1 s so a failover completes in a few seconds.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

import orjson
import pytest
from redis.asyncio import Redis
from stored import payload

from agentmem import AgentMemoryError, AgentMemoryStore, InvalidArgumentError
from agentmem.keys import KeySchema
from agentmem.sentinel import parse_sentinel_url
from agentmem.testing.sentinel import SentinelGroup


def _primary_url(group: SentinelGroup) -> str:
    host, port = group.primary_address()
    return f"redis://{host}:{port}"


async def test_from_url_and_from_sentinel_write_to_the_primary(agentmem_sentinel: SentinelGroup) -> None:
    """Both ways in reach the primary the sentinels name: every operation works, and the data
    is on the primary itself."""
    group = agentmem_sentinel
    by_url = AgentMemoryStore.from_url(group.url, prefix="t")
    by_list = AgentMemoryStore.from_sentinel(group.sentinel_addresses, group.service, prefix="t")
    try:
        await by_url.save_context("s", {"name": "Li Wei"})
        await by_list.update_context("s", {"intent": "refund"})
        assert await by_url.append_messages("s", [{"role": "user", "content": "hi"}]) == 1
        await by_list.remember("u", {"lang": "zh"})
        turn = await by_url.load_turn("s", user_id="u")
        assert turn.context == {"name": "Li Wei", "intent": "refund"}
        assert turn.history == [{"role": "user", "content": "hi"}]
        assert turn.profile == {"lang": "zh"}
        primary = Redis.from_url(_primary_url(group))
        try:
            keys = KeySchema("t").session("s")
            base = await primary.get(keys.base)  # save_context's base object
            assert base is not None
            assert orjson.loads(payload(base))["name"] == "Li Wei"
            assert await primary.llen(keys.history) == 1
        finally:
            await primary.aclose()
    finally:
        await by_url.aclose()
        await by_list.aclose()


@pytest.mark.slow
async def test_failover_is_followed_without_the_caller_doing_anything(
    agentmem_sentinel: SentinelGroup,
) -> None:
    """kill -9 of the primary under load: after the replica's promotion calls succeed again,
    through the same store, within a probe interval; every error on the way is typed."""
    group = agentmem_sentinel
    store = AgentMemoryStore.from_url(group.url, prefix="t")
    acked: dict[str, list[int]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()
    an_ack = asyncio.Event()

    async def agent(name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await store.append_messages(name, [{"n": n}])
                acked[name].append(n)
                an_ack.set()
            except AgentMemoryError as exc:  # anything else fails the test
                errors[type(exc).__name__] += 1
            await asyncio.sleep(0.01)

    try:
        agents = [asyncio.create_task(agent(f"s{i}")) for i in range(20)]
        await asyncio.sleep(1.0)
        old = group.primary_address()
        acked_before_kill = sum(map(len, acked.values()))
        killed_at = time.monotonic()
        await asyncio.to_thread(group.kill_primary)
        await asyncio.to_thread(group.wait_for_promotion, old)
        promoted_at = time.monotonic()
        an_ack.clear()
        await asyncio.wait_for(an_ack.wait(), 5.0)
        first_ack_after = time.monotonic() - promoted_at
        await asyncio.sleep(1.0)
        errors_before_end = sum(errors.values())
        await asyncio.sleep(1.0)  # a quiet second: no error once the new primary answers
        stop.set()
        await asyncio.gather(*agents)

        lost = 0
        for name, numbers in acked.items():
            stored = {m["n"] for m in await store.load_history(name, last=100_000)}
            lost += sum(1 for n in numbers if n not in stored)
        report = {
            "failover_seconds": round(promoted_at - killed_at, 2),
            "first_ack_after_promotion_s": round(first_ack_after, 3),
            "acknowledged_before_kill": acked_before_kill,
            "acknowledged": sum(map(len, acked.values())),
            "acknowledged_then_lost": lost,
            "typed_errors": dict(errors),
        }
        print("\nsentinel failover report:", json.dumps(report, indent=2))
        assert first_ack_after < store.config.breaker_probe_interval + 0.5
        assert sum(errors.values()) == errors_before_end
        assert group.primary_address() != old
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "sentinels", "service", "db"),
    [
        ("redis+sentinel://h1:26380,h2/agents", [("h1", 26380), ("h2", 26379)], "agents", 0),
        ("redis+sentinel://:pw@127.0.0.1:5000/svc/3", [("127.0.0.1", 5000)], "svc", 3),
    ],
)
def test_sentinel_urls_are_read(url: str, sentinels: list[tuple[str, int]], service: str, db: int) -> None:
    """Sentinel addresses (default port 26379), service and database come from the URL."""
    target = parse_sentinel_url(url)
    assert (target.sentinels, target.service_name, target.db) == (sentinels, service, db)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:26379",
        "redis+sentinel://h1:x/svc",
        "redis+sentinel:///svc",
        "redis+sentinel://h1/svc/notadb",
        "redis+sentinel://h1/svc?not_an_option=1",
    ],
)
def test_bad_sentinel_urls_say_what_is_wrong(url: str) -> None:
    """A malformed Sentinel URL raises InvalidArgumentError before anything connects."""
    with pytest.raises(InvalidArgumentError):
        AgentMemoryStore.from_url(url)


async def test_credentials_and_options_in_a_sentinel_url_reach_the_config() -> None:
    """user:password and pool options in a Sentinel URL become the store's config (the
    password never shown by repr), as with a plain URL."""
    store = AgentMemoryStore.from_url("redis+sentinel://agent:s3cret@127.0.0.1:5000/svc?socket_timeout=3")
    try:
        assert (store.config.username, store.config.password) == ("agent", "s3cret")
        assert store.config.socket_timeout == 3.0
        assert "s3cret" not in repr(store.config)
    finally:
        await store.aclose()


async def test_a_primary_demoted_under_open_connections_is_left_for_the_new_one(
    agentmem_sentinel: SentinelGroup,
) -> None:
    """A graceful SENTINEL FAILOVER (no process dies): the sentinels demote the primary and
    drop its clients; the store's next write, on the connection it kept open, fails, is
    retried on a connection to the primary the sentinels now name, and lands there."""
    group = agentmem_sentinel
    store = AgentMemoryStore.from_url(group.url, prefix="t")
    sentinel = Redis(port=group.sentinel_addresses[0][1])
    try:
        await store.save_context("s", {"n": 1})  # a connection to the primary, kept open
        old = group.primary_address()
        await sentinel.execute_command("SENTINEL", "FAILOVER", group.service)  # type: ignore[no-untyped-call]
        new = await asyncio.to_thread(group.wait_for_promotion, old)
        demoted = Redis(host=old[0], port=old[1])
        try:
            for _ in range(300):  # until the old primary is a replica (writes there: READONLY)
                if (await demoted.role())[0] in (b"slave", "slave"):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the old primary was never demoted")
        finally:
            await demoted.aclose()
        await store.save_context("s", {"n": 2})
        assert await store.load_context("s") == {"n": 2}
        primary = Redis(host=new[0], port=new[1])
        try:
            base = await primary.get(KeySchema("t").session("s").base)
            assert base is not None
            assert orjson.loads(payload(base)) == {"n": 2}
        finally:
            await primary.aclose()
    finally:
        await sentinel.aclose()
        await store.aclose()
