"""`agentmem inspect` on a real server: what it shows, how it shows corruption, and that it
changes nothing (TTLs included)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.cli import main
from agentmem.config import StoreConfig
from agentmem.keys import KeySchema
from agentmem.testing import ServerInfo
from agentmem.testing.server import EmbeddedServer

#: A TTL far below the store's default (3600 s): a refresh by inspect would show.
LOWERED_TTL_MS = 50_000


def inspect(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *args: str) -> tuple[int, str]:
    code = main(["inspect", "--url", url, "--prefix", prefix, *args])
    return code, capsys.readouterr().out


@pytest.fixture
async def remembered(agentmem_store: AgentMemoryStore) -> AgentMemoryStore:
    """A store holding two sessions, a deleted one and a user's facts."""
    store = agentmem_store
    await store.save_context("call 1", {"phone": "13800138000", "intent": "return_order"})
    await store.update_context("call 1", {"name": "Li Wei"})
    await store.append_messages("call 1", [{"role": "user", "content": f"message {n}"} for n in range(5)])
    await store.save_context("call-2", {"intent": "billing"})
    await store.save_context("other", {"x": 1})
    await store.delete_session("other")
    await store.remember("user-42", {"preferred_name": "Li", "language": "zh"})
    return store


async def test_session(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session shows its context, its last messages, TTL and size; marker fields stay hidden."""
    code, out = inspect(
        capsys, agentmem_server.url, remembered.config.prefix, "session", "call 1", "--last", "2"
    )
    assert code == 0
    assert "session 'call 1'" in out
    assert 'phone: "13800138000"' in out
    assert 'name: "Li Wei"' in out
    assert "history    5 messages, last 2:" in out
    assert '[3] {"role":"user","content":"message 3"}' in out
    assert "message 2" not in out
    assert "TTL left   3" in out  # 35xx.x s of the 3600 s default
    assert "size       " in out
    assert "MEMORY USAGE" in out
    assert "replaced   20" in out  # the save_context's version, as a time
    assert "\\xfe" not in out
    assert "\\xff" not in out
    assert "CORRUPT" not in out


async def test_user(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user shows their facts, with no expiry (profile_ttl unset)."""
    code, out = inspect(capsys, agentmem_server.url, remembered.config.prefix, "user", "user-42")
    assert code == 0
    assert "facts      2 fields" in out
    assert 'preferred_name: "Li"' in out
    assert "TTL left   no expiry" in out


async def test_unknown_session(
    agentmem_store: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session with no keys says so and exits 0."""
    code, out = inspect(capsys, agentmem_server.url, agentmem_store.config.prefix, "session", "nobody")
    assert code == 0
    assert "no memory stored" in out


async def test_sessions_listing(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """sessions lists every session (a deleted one as deleted), --match filters on the decoded
    id, --count stops the listing and says so."""
    prefix = remembered.config.prefix
    code, out = inspect(capsys, agentmem_server.url, prefix, "sessions")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["session", "TTL", "left", "size", "context", "messages"]
    assert lines[1].startswith("'call 1'")
    assert lines[1].split()[-2:] == ["yes", "5"]
    assert lines[2].startswith("'call-2'")
    assert lines[3].startswith("'other'")
    assert "deleted" in lines[3]
    assert lines[4] == "3 sessions"

    code, out = inspect(capsys, agentmem_server.url, prefix, "sessions", "--match", "call?[0-9]")
    assert [line.split("'")[1] for line in out.splitlines()[1:-1]] == ["call 1", "call-2"]

    code, out = inspect(capsys, agentmem_server.url, prefix, "sessions", "--match", "call *")
    assert [line.split("'")[1] for line in out.splitlines()[1:-1]] == ["call 1"]

    code, out = inspect(capsys, agentmem_server.url, prefix, "sessions", "--count", "1")
    assert "1 session\n" in out
    assert "stopped at --count 1; more sessions match" in out


async def test_json_shapes(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints one object per report, with the data decoded and the keys described."""
    prefix = remembered.config.prefix
    _, out = inspect(capsys, agentmem_server.url, prefix, "--json", "session", "call 1", "--last", "1")
    report = json.loads(out)
    assert set(report) == {
        "kind", "id", "prefix", "exists", "ttl_ms", "size_bytes", "size_source",
        "context", "history_length", "history", "corrupt", "meta", "keys",
    }  # fmt: skip
    assert report["context"] == {"phone": "13800138000", "intent": "return_order", "name": "Li Wei"}
    assert report["history"] == [{"index": 4, "message": {"role": "user", "content": "message 4"}}]
    assert 3_000_000 < report["ttl_ms"] <= 3_600_000
    assert report["size_bytes"] == sum(key["bytes"] for key in report["keys"]) > 0
    assert {key["part"]: key["type"] for key in report["keys"]} == {
        "ctx": "hash",
        "base": "string",
        "hist": "list",
        "log": "string",
    }
    assert set(report["meta"]) == {"replaced_at"}

    _, out = inspect(capsys, agentmem_server.url, prefix, "--json", "user", "user-42")
    assert json.loads(out)["facts"] == {"preferred_name": "Li", "language": "zh"}

    _, out = inspect(capsys, agentmem_server.url, prefix, "--json", "sessions")
    listing = json.loads(out)
    assert listing["truncated"] is False
    assert [entry["id"] for entry in listing["sessions"]] == ["call 1", "call-2", "other"]
    assert set(listing["sessions"][0]) == {
        "id",
        "ttl_ms",
        "size_bytes",
        "context",
        "messages",
        "deleted",
        "corrupt",
    }


async def test_corrupt_data_is_shown_not_hidden(
    remembered: AgentMemoryStore,
    agentmem_server: ServerInfo,
    agentmem_redis: Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A corrupt context field, history item or key type is named; the rest still shows; exit 1."""
    prefix = remembered.config.prefix
    keys = KeySchema(prefix)
    await agentmem_redis.hset(keys.session("call 1").context, "notes", b"{oops")
    await agentmem_redis.rpush(keys.session("call 1").history, b"[1, 2]")
    await agentmem_redis.set(keys.profile("user-42"), b"not a hash")

    code, out = inspect(capsys, agentmem_server.url, prefix, "session", "call 1", "--last", "2")
    assert code == 1
    assert 'name: "Li Wei"' in out
    assert "CORRUPT    context field 'notes': unexpected character" in out
    assert "[5] CORRUPT '[1, 2]'" in out
    assert "CORRUPT    history item 5: history item 0 is a list, not an object" in out

    code, out = inspect(capsys, agentmem_server.url, prefix, "user", "user-42")
    assert code == 1
    assert "holds a string, not a hash" in out

    # The listing checks key types only (decoding every value of every session is session's job).
    code, out = inspect(capsys, agentmem_server.url, prefix, "--json", "sessions", "--match", "call 1")
    assert code == 0
    assert json.loads(out)["sessions"][0]["corrupt"] == []
    await agentmem_redis.set(keys.session("call-2").history, b"x")
    code, out = inspect(capsys, agentmem_server.url, prefix, "sessions")
    assert code == 1
    assert "CORRUPT" in out.splitlines()[2]


async def _pttls(client: Redis, keys: list[str]) -> dict[str, int]:
    return {key: int(await client.pttl(key)) for key in keys}


async def test_inspect_never_refreshes_a_ttl(
    remembered: AgentMemoryStore,
    agentmem_server: ServerInfo,
    agentmem_redis: Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every inspect command leaves every TTL where it was (the store's reads would slide them)."""
    prefix = remembered.config.prefix
    keys = KeySchema(prefix)
    watched = [
        *keys.session("call 1").all()[:3],
        keys.session("call-2").base,
        keys.session("other").deleted,
    ]
    for key in watched:
        assert await agentmem_redis.pexpire(key, LOWERED_TTL_MS)
    await agentmem_redis.pexpire(keys.profile("user-42"), LOWERED_TTL_MS)
    watched.append(keys.profile("user-42"))
    before = await _pttls(agentmem_redis, watched)

    for args in (("session", "call 1"), ("session", "other"), ("user", "user-42"), ("sessions",)):
        inspect(capsys, agentmem_server.url, prefix, *args)
        inspect(capsys, agentmem_server.url, prefix, "--json", *args)

    after = await _pttls(agentmem_redis, watched)
    for key in watched:
        assert 0 < after[key] <= before[key] <= LOWERED_TTL_MS, key
    # The check can fail: a store read (sliding_ttl) does refresh them.
    await remembered.load_turn("call 1", user_id="user-42")
    assert await agentmem_redis.pttl(keys.session("call 1").context) > LOWERED_TTL_MS


async def test_without_memory_usage_sizes_are_value_bytes(
    agentmem_private_server: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user who may not run MEMORY USAGE still gets sizes: the bytes of the stored values."""
    url = agentmem_private_server.url
    async with AgentMemoryStore.from_url(url, prefix="app") as store:
        await store.save_context("s", {"a": "x" * 100})
        await store.append_messages("s", [{"m": "y" * 50}])
    admin = Redis.from_url(url)
    try:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "reader", "on", ">pw", "~app:*", "+@read", "-memory"
        )
    finally:
        await admin.aclose()
    reader_url = url.replace("redis://", "redis://reader:pw@")
    code, out = inspect(capsys, reader_url, "app", "--json", "session", "s")
    report = json.loads(out)
    assert code == 0
    assert report["size_source"].startswith("bytes of the stored values (MEMORY USAGE refused")
    assert report["size_bytes"] > 150
    assert report["context"] == {"a": "x" * 100}


def test_python_m_agentmem_inspect(agentmem_server: ServerInfo, agentmem_prefix: str) -> None:
    """The installed command runs as a subprocess too (exit 0, an empty listing)."""
    command = ["inspect", "--url", agentmem_server.url, "--prefix", agentmem_prefix, "sessions"]
    done = subprocess.run(
        [sys.executable, "-m", "agentmem", *command], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "no sessions found"


def test_unreachable_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that does not answer is exit code 2 with one line on stderr."""
    assert main(["inspect", "--url", "redis://127.0.0.1:1", "sessions"]) == 2
    assert "could not read the server" in capsys.readouterr().err


@pytest.mark.cluster
async def test_inspect_on_a_redis_cluster(
    agentmem_cluster_store: AgentMemoryStore,
    agentmem_cluster: list[str],
    agentmem_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a cluster node inspect reads every key where it lives and lists the sessions of
    every primary (a plain client would meet MOVED, and SCAN would see one node)."""
    from redis.cluster import RedisCluster

    store = agentmem_cluster_store
    ids = [f"call-{i}" for i in range(12)]
    for sid in ids:
        await store.save_context(sid, {"n": sid})
        await store.append_messages(sid, [{"role": "user", "content": sid}])
    await store.remember("user-42", {"lang": "zh"})
    keys = KeySchema(agentmem_prefix)
    cluster = RedisCluster.from_url(agentmem_cluster[0])
    try:
        nodes = {cluster.get_node_from_key(keys.session(sid).base).name for sid in ids}  # type: ignore[no-untyped-call]
    finally:
        cluster.close()
    assert len(nodes) > 1  # the case at hand: sessions on several primaries

    code, out = inspect(capsys, agentmem_cluster[0], agentmem_prefix, "--json", "sessions", "--count", "50")
    assert code == 0
    assert sorted(entry["id"] for entry in json.loads(out)["sessions"]) == sorted(ids)
    for sid in ids:
        code, out = inspect(capsys, agentmem_cluster[0], agentmem_prefix, "--json", "session", sid)
        assert code == 0
        report = json.loads(out)
        assert report["context"] == {"n": sid}
        assert report["history"] == [{"index": 0, "message": {"role": "user", "content": sid}}]
    code, out = inspect(capsys, agentmem_cluster[0], agentmem_prefix, "--json", "user", "user-42")
    assert code == 0
    assert json.loads(out)["facts"] == {"lang": "zh"}


async def test_field_names_cannot_forge_lines_or_send_terminal_escapes(
    agentmem_store: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A context or fact name holding a newline or an escape is printed quoted and escaped, one
    line per field, like values and ids are (issue 19, finding 10)."""
    forged = "note\n  CORRUPT    nothing, all fine"
    escape = "\x1b[2K\rname"
    await agentmem_store.update_context("call-1", {forged: 1, escape: "Li", "plain name": 2})
    await agentmem_store.remember("u", {forged: 1})
    prefix = agentmem_store.config.prefix
    code, out = inspect(capsys, agentmem_server.url, prefix, "session", "call-1")
    assert code == 0
    assert "\x1b" not in out
    assert "\r" not in out
    assert "CORRUPT" not in [line.split()[0] for line in out.splitlines() if line.strip()]
    assert '    "note\\n  CORRUPT    nothing, all fine": 1' in out
    assert '    "\\u001b[2K\\rname": "Li"' in out
    assert "    plain name: 2" in out  # printable names stay as they are
    code, out = inspect(capsys, agentmem_server.url, prefix, "user", "u")
    assert code == 0
    assert '    "note\\n  CORRUPT    nothing, all fine": 1' in out


async def test_options_after_the_target(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """--url, --prefix and --json are accepted after the target as well as before it (issue 19,
    finding 14), and one given after is not reset by the default before."""
    prefix = remembered.config.prefix
    code = main(["inspect", "session", "call 1", "--url", agentmem_server.url, "--prefix", prefix, "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prefix"] == prefix
    assert report["context"]["name"] == "Li Wei"
    code = main(["inspect", "--url", agentmem_server.url, "--prefix", prefix, "sessions", "--json"])
    assert code == 0
    assert len(json.loads(capsys.readouterr().out)["sessions"]) == 3
    assert main(["inspect", "sessions"]) == 2
    assert "--url is required" in capsys.readouterr().err


def test_help_shows_the_default_prefix_and_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    """inspect --help names its default prefix (the store's) and every target with its arguments."""
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {StoreConfig().prefix})" in text
    for target in ("session ID [--last N]", "user ID", "sessions [--match GLOB] [--count N]"):
        assert target in text


async def test_an_empty_prefix_says_so_and_names_the_prefixes_it_sees(
    remembered: AgentMemoryStore, agentmem_server: ServerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing under the prefix at all: inspect says so, and lists the prefixes whose keys look
    like a store's (here the test store's), instead of a bare "no memory stored"."""
    empty = remembered.config.prefix + "-unused"
    code, out = inspect(capsys, agentmem_server.url, empty, "session", "call 1")
    assert code == 0
    assert "no memory stored" in out
    assert f"prefix {empty!r} holds no keys at all on this server" in out
    seen = next(line for line in out.splitlines() if line.startswith("prefixes with agentmem keys here:"))
    assert repr(remembered.config.prefix) in seen
    code, out = inspect(capsys, agentmem_server.url, empty, "sessions")
    assert "holds no keys at all" in out
    # a prefix that holds keys, just not this session's: no such note
    code, out = inspect(capsys, agentmem_server.url, remembered.config.prefix, "session", "nobody")
    assert "no memory stored" in out
    assert "holds no keys" not in out


@pytest.mark.parametrize("newer", ["0.2", "0.3"])
async def test_the_newer_of_a_0_2_and_a_0_3_save_is_shown_never_both(
    agentmem_store: AgentMemoryStore,
    agentmem_redis: Redis,
    agentmem_server: ServerInfo,
    capsys: pytest.CaptureFixture[str],
    newer: str,
) -> None:
    """During a rolling upgrade a 0.2 process may save into the hash (its base in field
    0xFF 0x01, its version in 0xFF) beside 0.3's base key: inspect shows the newer save, as
    the store reads it, not the two merged."""
    store = agentmem_store
    await store.save_context("s", {"by": "0.3", "only_0_3": 1})
    keys = KeySchema(store.config.prefix).session("s")
    base = await agentmem_redis.get(keys.base)
    assert isinstance(base, bytes)
    saved_0_3 = int.from_bytes(base[:8], "big")
    version_0_2 = saved_0_3 + 1_000_000 if newer == "0.2" else saved_0_3 - 1_000_000
    await agentmem_redis.hset(
        keys.context, mapping={b"\xff": str(version_0_2).encode(), b"\xff\x01": b'{"by":"0.2","only_0_2":2}'}
    )
    expected = {"by": "0.2", "only_0_2": 2} if newer == "0.2" else {"by": "0.3", "only_0_3": 1}
    assert await store.load_context("s") == expected
    code, out = inspect(capsys, agentmem_server.url, store.config.prefix, "session", "s", "--json")
    assert code == 0
    assert json.loads(out)["context"] == expected
