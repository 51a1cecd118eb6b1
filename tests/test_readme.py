"""The README's examples run as written, so the front door cannot rot.

Every ```python block runs, each in a subprocess of its own from an empty directory:
- against a private server whose URL is in ``AGENTMEM_REDIS_URL`` (the variable the snippets
  read); a block that uses ``store.memories`` or a ``LangGraphStore(index=...)`` gets the
  run's search-capable server instead, and must write under its own ``prefix=``;
- a block that reads ``AGENTMEM_SENTINEL_URL``, ``AGENTMEM_CLUSTER_URL`` or
  ``AGENTMEM_TLS_ADDRESS`` (with ``AGENTMEM_TLS_CERTS``) against the plugin's real Sentinel
  group, Redis Cluster or TLS server (marker ``tls``: a binary built with TLS);
- the block after ``<!-- pytest-example -->`` by pytest in a new project, with the
  configuration block marked ``<!-- pytest-example-config -->``.
A block after ``<!-- excerpt-of: examples/<file>.py -->`` is not run itself: its lines must
appear, in order, in that example, which the tests run. Shell commands and output samples
carry another language tag (or none) and are not run.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from agentmem.acl import acl_setuser_args
from agentmem.testing.fixtures import delete_cluster_prefix
from agentmem.testing.sentinel import SentinelGroup
from agentmem.testing.server import EmbeddedServer
from agentmem.testing.tls import TlsServer

README = Path(__file__).resolve().parent.parent / "README.md"
EXCERPT = re.compile(r"<!-- excerpt-of: (?P<path>examples/\S+\.py) -->")
#: Seconds one snippet may take (the Quickstart without a URL starts a server of its own).
SNIPPET_TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str  # the HTML comment on the line before the fence, or ""


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, with its language and the marker before it."""
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\S*)", lines[index])
        if fence is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        before = lines[index - 1].strip() if index else ""
        marker = before if before.startswith("<!--") else ""
        blocks.append(Block(index + 1, fence.group(1), "\n".join(lines[index + 1 : end]) + "\n", marker))
        index = end + 1
    return blocks


def _python(marker: str | None) -> list[Block]:
    return [b for b in readme_blocks() if b.language == "python" and (marker is None or b.marker == marker)]


RUNNABLE = _python("")
#: A block needs a query engine (FT.*) when it uses these.
SEARCH_USES = re.compile(r"\.memories\.|LangGraphStore\([^)]*index=")


def needs_search(block: Block) -> bool:
    """Whether the block needs a server with a query engine (the search-capable fixture)."""
    return SEARCH_USES.search(block.code) is not None


def _run(code: str, tmp_path: Path, url: str | None, **variables: str) -> subprocess.CompletedProcess[str]:
    """``code`` as a user would run it: a file of its own, from an empty directory, with
    ``url`` in AGENTMEM_REDIS_URL (none if None) and ``variables`` in its environment."""
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "AGENTMEM_REDIS_URL"}
    if url is not None:
        env["AGENTMEM_REDIS_URL"] = url
    env.update(variables)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )


def test_every_python_block_runs_or_is_an_excerpt_of_an_example() -> None:
    """A python block is run, or marked as the plugin example, or is an excerpt of an example."""
    for block in _python(None):
        if block.marker in ("", "<!-- pytest-example -->"):
            continue
        assert EXCERPT.fullmatch(block.marker), f"README.md:{block.line}: unknown marker {block.marker!r}"
    assert len(RUNNABLE) >= 2
    assert len(_python("<!-- pytest-example -->")) == 1


#: Blocks that read their server from one of these run against that topology's fixture.
TOPOLOGY_VARIABLES = ("AGENTMEM_SENTINEL_URL", "AGENTMEM_CLUSTER_URL", "AGENTMEM_TLS_ADDRESS")


def topology_block(variable: str) -> Block:
    """The one runnable block that reads ``variable``."""
    [block] = [b for b in RUNNABLE if variable in b.code]
    return block


EXCERPTS = [b for b in _python(None) if EXCERPT.fullmatch(b.marker)]
PLAIN = [b for b in RUNNABLE if not needs_search(b) and not any(v in b.code for v in TOPOLOGY_VARIABLES)]
SEARCHING = [b for b in RUNNABLE if needs_search(b)]


def _code_lines(code: str) -> list[str]:
    """The code of each non-blank line, without indentation or a trailing ``  # comment``."""
    lines = (re.sub(r"\s{2,}#.*$", "", line).strip() for line in code.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("block", EXCERPTS, ids=[f"line{b.line}" for b in EXCERPTS])
def test_an_excerpt_is_in_its_example_in_order(block: Block) -> None:
    """A block marked excerpt-of is the example's own lines, in order (indentation and trailing
    comments aside), so the README cannot show code the example, which the tests run, lost."""
    marker = EXCERPT.fullmatch(block.marker)
    assert marker is not None
    example = _code_lines((README.parent / marker.group("path")).read_text())
    position = 0
    for line in _code_lines(block.code):
        assert line in example[position:], (
            f"README.md:{block.line}: {line!r} not in {marker.group('path')} here"
        )
        position = example.index(line, position) + 1


@pytest.mark.parametrize("block", EXCERPTS, ids=[f"line{b.line}" for b in EXCERPTS])
def test_an_excerpt_compiles(block: Block) -> None:
    """An excerpt is valid Python as shown (its example's imports and calls are run elsewhere)."""
    compile(block.code, f"README.md:{block.line}", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("block", PLAIN, ids=[f"line{b.line}" for b in PLAIN])
def test_readme_block_runs(block: Block, agentmem_private_server: EmbeddedServer, tmp_path: Path) -> None:
    """The block runs as written against the server in AGENTMEM_REDIS_URL, prints something,
    and writes to that server."""
    done = _run(block.code, tmp_path, agentmem_private_server.url)
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"
    assert done.stdout.strip(), f"README.md:{block.line} printed nothing: it should show what it did"
    with redis.Redis.from_url(agentmem_private_server.url) as client:
        assert client.dbsize() > 0, f"README.md:{block.line} stored nothing"


@pytest.mark.parametrize("block", SEARCHING, ids=[f"line{b.line}" for b in SEARCHING])
def test_readme_search_block_runs(block: Block, agentmem_search_server: Any, tmp_path: Path) -> None:
    """A block using store.memories or a LangGraph index runs as written against the
    search-capable server in AGENTMEM_REDIS_URL, prints something, and writes under its prefix
    (the server is shared: its keys are cleared first, so what is found is this run's)."""
    prefix = re.search(r'prefix="([^"]+)"', block.code)
    assert prefix is not None, f"README.md:{block.line}: a search block names its prefix="
    pattern = f"{prefix.group(1)}:*"
    with redis.Redis.from_url(agentmem_search_server.url) as client:
        for key in list(client.scan_iter(match=pattern, count=500)):
            client.delete(key)
        done = _run(block.code, tmp_path, agentmem_search_server.url)
        assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"
        assert done.stdout.strip(), f"README.md:{block.line} printed nothing: it should show what it did"
        written = list(client.scan_iter(match=pattern, count=500))
    assert written, f"README.md:{block.line} stored nothing under {pattern}"


def test_quickstart_on_a_fresh_machine(tmp_path: Path) -> None:
    """The Quickstart's block with no AGENTMEM_REDIS_URL starts its own throwaway server and
    shows the turn it stored: it runs as written with nothing else started."""
    quickstart = RUNNABLE[0]
    assert "embedded_server()" in quickstart.code
    done = _run(quickstart.code, tmp_path, None)
    assert done.returncode == 0, done.stderr
    assert "'phone': '13800138000'" in done.stdout
    assert "'name': 'Li Wei'" in done.stdout
    assert "{'preferred_name': 'Li'}" in done.stdout


def test_plugin_example_passes_in_a_new_project(
    pytester: pytest.Pytester, agentmem_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's example test and its configuration block, dropped into a new project,
    pass with no other settings and no pytest-asyncio configuration warning."""
    [config] = [b for b in readme_blocks() if b.marker == "<!-- pytest-example-config -->"]
    [example] = _python("<!-- pytest-example -->")
    assert config.language == "toml"
    pytester.makepyprojecttoml(config.code)
    pytester.makepyfile(test_readme_example=example.code)
    monkeypatch.setenv("AGENTMEM_REDIS_URL", agentmem_server.url)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    result = pytester.runpytest_subprocess(
        "-p", "no:valkey", "-p", "no:cacheprovider", "--require-real-redis"
    )
    result.assert_outcomes(passed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "PytestDeprecationWarning" not in output
    assert 'asyncio_default_fixture_loop_scope" is unset' not in output


def _keys(url: str, pattern: str) -> list[bytes]:
    with redis.Redis.from_url(url) as client:
        return list(client.scan_iter(match=pattern, count=500))


def test_readme_sentinel_block_runs(agentmem_sentinel: SentinelGroup, tmp_path: Path) -> None:
    """The Sentinel block runs as written with a real Sentinel group's URL in
    AGENTMEM_SENTINEL_URL, and its write is on the primary the sentinels name."""
    block = topology_block("AGENTMEM_SENTINEL_URL")
    done = _run(block.code, tmp_path, None, AGENTMEM_SENTINEL_URL=agentmem_sentinel.url)
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"
    assert "{'name': 'Li Wei'}" in done.stdout
    host, port = agentmem_sentinel.primary_address()
    assert _keys(f"redis://{host}:{port}", "support-bot:*"), "nothing written on the primary"


async def test_readme_cluster_block_runs(agentmem_cluster: list[str], tmp_path: Path) -> None:
    """The Redis Cluster block runs as written with a node of the real cluster in
    AGENTMEM_CLUSTER_URL: its three stores (detected, cluster=True, your client) each write
    a session, found on the cluster's nodes."""
    block = topology_block("AGENTMEM_CLUSTER_URL")
    await delete_cluster_prefix(agentmem_cluster, "support-bot")
    try:
        done = _run(block.code, tmp_path, None, AGENTMEM_CLUSTER_URL=agentmem_cluster[0])
        assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"
        assert done.stdout.count("{'name': 'Li Wei'}") == 3, done.stdout
        written = {key for url in agentmem_cluster for key in _keys(url, "support-bot:*")}
        for number in (1, 2, 3):
            assert any(f"call-{number}".encode() in key for key in written), f"call-{number} not written"
    finally:
        await delete_cluster_prefix(agentmem_cluster, "support-bot")


@pytest.mark.tls
def test_readme_tls_block_runs(agentmem_tls_server: TlsServer, tmp_path: Path) -> None:
    """The TLS block runs as written against a real TLS server (its TLS port in
    AGENTMEM_TLS_ADDRESS, its CA and client certificate in AGENTMEM_TLS_CERTS, an ACL user
    tenantA with the printed rule): all four ways in connect and write."""
    block = topology_block("AGENTMEM_TLS_ADDRESS")
    certs = Path(agentmem_tls_server.ca_path).parent
    assert {p.name for p in certs.iterdir()} >= {"ca.pem", "client.pem", "client.key"}
    with redis.Redis.from_url(agentmem_tls_server.plain_url) as admin:
        rule = acl_setuser_args("tenantA", "tenantA", password="secret", client_name=True)
        admin.execute_command("ACL", "SETUSER", *rule)
    done = _run(
        block.code,
        tmp_path,
        None,
        AGENTMEM_TLS_ADDRESS=agentmem_tls_server.url.removeprefix("rediss://"),
        AGENTMEM_TLS_CERTS=str(certs),
        TENANT_A_PASSWORD="secret",
    )
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"
    for name in ("password", "mutual", "context", "url"):
        assert f"{name} {{'over': 'TLS'}}" in done.stdout, done.stdout
    tenant = _keys(agentmem_tls_server.plain_url, "tenantA:*")
    everything = _keys(agentmem_tls_server.plain_url, "*")
    for name in ("password", "url"):  # the tenant's stores, under its prefix
        assert any(f"call-{name}".encode() in key for key in tenant), name
    for name in ("mutual", "context"):  # the default prefix
        assert any(f"call-{name}".encode() in key for key in everything), name
