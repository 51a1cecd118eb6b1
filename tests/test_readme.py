"""The README's examples run as written, so the front door cannot rot.

Every ```python block runs, each in a subprocess of its own against a private server
whose URL is in ``AGENTMEM_REDIS_URL`` (the variable the snippets read; a block that uses
``store.memories`` or a ``LangGraphStore(index=...)`` gets the run's search-capable server
instead, and must write under its own ``prefix=``), unless the line
before it says why not (``<!-- not-run: reason -->``) or marks it as the plugin's example
test (``<!-- pytest-example -->``, run by pytest in a new project with the configuration
block marked ``<!-- pytest-example-config -->``). Shell commands and output samples carry
another language tag (or none) and are not run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from agentmem.testing.server import EmbeddedServer

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = re.compile(r"<!-- not-run: (?P<reason>.+\S) -->")
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


def _run(code: str, tmp_path: Path, url: str | None) -> subprocess.CompletedProcess[str]:
    """``code`` as a user would run it: a file of its own, from an empty directory."""
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "AGENTMEM_REDIS_URL"}
    if url is not None:
        env["AGENTMEM_REDIS_URL"] = url
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )


def test_every_python_block_runs_or_says_why_not() -> None:
    """A python block is run, or marked as the plugin example, or says why it cannot run."""
    for block in _python(None):
        if block.marker in ("", "<!-- pytest-example -->"):
            continue
        assert NOT_RUN.fullmatch(block.marker), f"README.md:{block.line}: unknown marker {block.marker!r}"
    assert len(RUNNABLE) >= 2
    assert len(_python("<!-- pytest-example -->")) == 1


NOT_RUNNABLE = [b for b in _python(None) if NOT_RUN.fullmatch(b.marker)]
PLAIN = [b for b in RUNNABLE if not needs_search(b)]
SEARCHING = [b for b in RUNNABLE if needs_search(b)]


@pytest.mark.parametrize("block", NOT_RUNNABLE, ids=[f"line{b.line}" for b in NOT_RUNNABLE])
def test_a_block_that_cannot_run_still_compiles_and_imports(block: Block, tmp_path: Path) -> None:
    """A block marked not-run (it needs a cluster, a model, ...) is still valid Python and
    every name it imports exists, so a renamed module or class fails here."""
    tree = compile(
        block.code, f"README.md:{block.line}", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    if "google.adk" in block.code and importlib.util.find_spec("google.adk") is None:
        pytest.skip("needs the adk extra (Python >= 3.11), as tests/test_integration_adk.py")
    done = _run("\n".join(ast.unparse(node) for node in imports) + "\n", tmp_path, None)
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr}"


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
