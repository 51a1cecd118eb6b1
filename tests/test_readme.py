"""The README's examples run as written (against the test server), so the front door cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis

from agentmem.keys import escape_glob

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_quickstart_runs(
    agentmem_server: Any, agentmem_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Quickstart block, pointed at the test server and prefix, stores and loads a turn."""
    code = _python_blocks()[0]
    assert "redis://localhost:6379/0" in code
    assert 'prefix="support-bot"' in code
    code = code.replace("redis://localhost:6379/0", agentmem_server.url)
    code = code.replace('prefix="support-bot"', f"prefix={agentmem_prefix!r}")
    try:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_quickstart"})
    finally:
        with redis.Redis.from_url(agentmem_server.url) as client:
            for key in client.scan_iter(match=escape_glob(agentmem_prefix) + ":*"):
                client.unlink(key)
    out = capsys.readouterr().out
    assert "'phone': '13800138000'" in out
    assert "'name': 'Li Wei'" in out
    assert "{'preferred_name': 'Li'}" in out


def test_blackhole_example_passes(pytester: pytest.Pytester) -> None:
    """The README's blackhole test, dropped into a project of its own, passes with the plugin."""
    example = next(block for block in _python_blocks() if "agentmem_proxy.blackhole()" in block)
    pytester.makepyfile(test_readme_example=example)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:valkey", "-p", "no:cacheprovider", "--require-real-redis"
    )
    result.assert_outcomes(passed=1)
