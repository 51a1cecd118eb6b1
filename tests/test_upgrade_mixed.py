"""Rolling upgrades 0.2 -> 0.3 (issue 19, findings 1 and 7): a real 0.2 process (its release
code, extracted from git) and 0.3 write the same sessions and users on one server; 0.3 never
corrupts a field, and honours a later 0.2 save, update and delete."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.testing import ServerInfo
from agentmem.testing.fixtures import StoreFactory

#: The last commit with 0.2's storage layout (version 0.2.0): the code a 0.2 deployment runs.
RELEASE_0_2 = "063c7a6"
REPO = Path(__file__).resolve().parent.parent

# Runs a list of store calls ([name, *args], ...) through 0.2's AgentMemoryStore and prints
# the module it imported and the results as JSON.
_RUNNER = """
import asyncio, json, sys
import agentmem
from agentmem import AgentMemoryStore

async def main():
    url, prefix, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = AgentMemoryStore.from_url(url, prefix=prefix)
    results = []
    try:
        for name, *args in calls:
            results.append(await getattr(store, name)(*args))
    finally:
        await store.aclose()
    print(json.dumps({"module": agentmem.__file__, "results": results}))

asyncio.run(main())
"""


@pytest.fixture(scope="session")
def agentmem_0_2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding 0.2's ``agentmem`` package, from its release commit (one extraction per
    test session and worker: works without pytest's cache plugin, as under ``-p no:cacheprovider``)."""
    target = tmp_path_factory.mktemp(f"agentmem-0.2-{RELEASE_0_2[:12]}")
    if not (target / "agentmem" / "__init__.py").exists():
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", RELEASE_0_2, "agentmem"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            pytest.fail(f"0.2's code is read from git ({RELEASE_0_2}): {archive.stderr.decode()}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


class Legacy:
    """A 0.2 process per ``run``: its own interpreter importing 0.2's package."""

    def __init__(self, code: Path, url: str, prefix: str) -> None:
        self.code, self.url, self.prefix = code, url, prefix

    async def run(self, *calls: list[Any]) -> list[Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RUNNER,
            self.url,
            self.prefix,
            json.dumps(calls),
            env={"PYTHONPATH": str(self.code), "PATH": "/usr/bin:/bin"},
            cwd=self.code,  # python -c puts the working directory first on sys.path
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        reply = json.loads(out)
        assert reply["module"].startswith(str(self.code)), reply["module"]  # 0.2, not this checkout
        results: list[Any] = reply["results"]
        return results


@pytest.fixture
def legacy(agentmem_0_2: Path, agentmem_server: ServerInfo, agentmem_prefix: str) -> Legacy:
    return Legacy(agentmem_0_2, agentmem_server.url, agentmem_prefix)


pytestmark = pytest.mark.single_node  # 0.2 runs against the one shared server


async def test_a_0_2_write_between_two_0_3_writes_corrupts_nothing(
    agentmem_store: AgentMemoryStore, legacy: Legacy, agentmem_redis: Redis
) -> None:
    """0.3 update/remember, then 0.2's, then 0.3's again: every field reads back, each stored with
    one version prefix (never two)."""
    store = agentmem_store
    await store.update_context("S", {"name": "Li Wei"})
    await store.remember("U", {"lang": "zh"})
    await legacy.run(["update_context", "S", {"intent": "refund"}], ["remember", "U", {"tz": "+8"}])
    await store.update_context("S", {"step": 2})
    await store.remember("U", {"vip": True})
    assert await store.load_context("S") == {"name": "Li Wei", "intent": "refund", "step": 2}
    assert await store.recall("U") == {"lang": "zh", "tz": "+8", "vip": True}
    for key in (store.engine.keys.session("S").context, store.engine.keys.profile("U")):
        for name, value in (await agentmem_redis.hgetall(key)).items():
            assert value[:1] == b"\x00", (name, value)  # a version prefix
            assert value[8:9] != b"\x00", (name, value)  # one, not two


async def test_0_2_and_0_3_updating_one_session_at_once_corrupt_nothing(
    agentmem_store: AgentMemoryStore, legacy: Legacy
) -> None:
    """150 update_context calls from a 0.2 process while 0.3 keeps updating the same session
    (interleaved for the 0.2 run's whole length): every field of both reads back."""
    store = agentmem_store
    old = asyncio.ensure_future(legacy.run(*(["update_context", "S", {f"old{i}": i}] for i in range(150))))
    ours = 0
    while not old.done():
        await store.update_context("S", {f"new{ours}": ours})
        ours += 1
        await asyncio.sleep(0.001)
    await old
    await store.update_context("S", {f"new{ours}": ours})
    context = await store.load_context("S")
    assert context == {**{f"new{i}": i for i in range(ours + 1)}, **{f"old{i}": i for i in range(150)}}


async def test_0_3_honours_a_later_0_2_save_everywhere(
    agentmem_store: AgentMemoryStore, legacy: Legacy
) -> None:
    """0.3 saves, 0.2 saves later: 0.3's load_context and load_turn return 0.2's save, and 0.3's
    next update_context merges over it (never switching back to the older 0.3 save)."""
    store = agentmem_store
    await store.save_context("S", {"step": "saved-by-0.3"})
    await legacy.run(["save_context", "S", {"step": "saved-by-0.2-later"}])
    assert await store.load_context("S") == {"step": "saved-by-0.2-later"}
    assert (await store.load_turn("S")).context == {"step": "saved-by-0.2-later"}
    await store.update_context("S", {"extra": 1})
    assert await store.load_context("S") == {"step": "saved-by-0.2-later", "extra": 1}
    await store.save_context("S", {"step": "saved-by-0.3-last"})
    assert await store.load_context("S") == {"step": "saved-by-0.3-last"}


async def test_0_3_honours_a_0_2_delete(
    agentmem_store_factory: StoreFactory, legacy: Legacy, agentmem_redis: Redis
) -> None:
    """0.3 saves a phone number, 0.2 deletes the session: 0.3 reads no context (nor the phone) from
    then on, and a later 0.3 update starts from nothing."""
    store = agentmem_store_factory()
    await store.save_context("D", {"phone": "+86 138 0000 0000"})
    await store.append_messages("D", [{"role": "user", "content": "call me"}])
    assert await legacy.run(["delete_session", "D"]) == [True]
    assert await store.load_context("D") is None
    turn = await store.load_turn("D")
    assert (turn.context, turn.history) == (None, [])
    await store.update_context("D", {"step": 1})
    assert await store.load_context("D") == {"step": 1}
