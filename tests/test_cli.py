"""The `agentmem` command: the demo against a given server and on its own embedded one."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from agentmem.cli import main


def test_demo_against_a_url(agentmem_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Turn 2 greets the caller by the name turn 1 stored."""
    assert main(["demo", "--url", agentmem_server.url]) == 0
    out = capsys.readouterr().out
    assert "Thanks, Li Wei." in out
    assert '"phone": "13800138000"' in out


def test_demo_survives_a_blip(agentmem_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """With a 1 s blackhole between turns the conversation still completes, and says how."""
    assert main(["demo", "--url", agentmem_server.url, "--blip"]) == 0
    out = capsys.readouterr().out
    assert "network blackhole for 1 s" in out
    assert "survived the blackhole" in out
    assert "Thanks, Li Wei." in out


def test_python_m_agentmem_demo_starts_its_own_server() -> None:
    """`python -m agentmem demo` with no URL starts, uses and stops an embedded server."""
    done = subprocess.run(
        [sys.executable, "-m", "agentmem", "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "started embedded" in done.stdout
    assert "Thanks, Li Wei." in done.stdout
    assert "stopping the embedded server" in done.stdout


def test_demo_fails_loudly_when_the_server_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable --url exits 1 with a typed error, not a happy transcript."""
    assert main(["demo", "--url", "redis://127.0.0.1:1/0"]) == 1
    assert "MemoryUnavailableError" in capsys.readouterr().err
