"""Server binaries and provisioning failures: what a broken source reports, and how fast."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from agentmem.testing import (
    EmbeddedServer,
    ProvisionSettings,
    ServerBinary,
    ServerStartError,
    ServerUnavailableError,
    probe_binary,
    provision,
)
from agentmem.testing.server import parse_version

#: A stand-in server binary: answers --version like Redis 7.0, then misbehaves as told.
FAKE_SERVER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "Redis server v=7.0.99 sha=0 malloc=libc bits=64"; exit 0; fi
{behaviour}
"""


def fake_server(directory: Path, behaviour: str) -> Path:
    path = directory / "redis-server"
    path.write_text(FAKE_SERVER.format(behaviour=behaviour))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_parse_version() -> None:
    """Versions parse to int tuples; suffixes after the digits are ignored."""
    assert parse_version("7.0.15") == (7, 0, 15)
    assert parse_version("9.1.2-rc1") == (9, 1, 2)
    with pytest.raises(ValueError, match="not a version"):
        parse_version("unstable")


def test_probe_binary_reads_flavor_and_version(tmp_path: Path) -> None:
    """probe_binary runs --version and reports the flavor and version it printed."""
    binary = probe_binary(fake_server(tmp_path, "exit 1"))
    assert (binary.flavor, binary.version, binary.version_info) == ("redis", "7.0.99", (7, 0, 99))
    assert binary.supports_debug_command_config


def test_redis_6_gets_no_debug_command_config(tmp_path: Path) -> None:
    """Redis 6.2 exits on unknown config, so enable-debug-command is only passed to 7+."""
    binary = probe_binary(fake_server(tmp_path, "exit 1"))
    old = ServerBinary(binary.path, "redis", "6.2.14")
    server = EmbeddedServer(old, tmp_path, port=1)
    assert "--enable-debug-command" not in server.command()
    assert server.command()[-3:] == ["--rename-command", "FLUSHALL", ""]


def test_server_that_exits_names_every_source(tmp_path: Path) -> None:
    """A binary that exits at start fails provisioning with its exit code, its last log
    lines, and the reason every earlier source was skipped."""
    path = fake_server(tmp_path, 'echo "FATAL CONFIG FILE ERROR: boom" >&2; exit 3')
    with pytest.raises(ServerUnavailableError) as raised:
        provision(ProvisionSettings(binary=str(path)), tmp_path)
    message = str(raised.value)
    assert "AGENTMEM_REDIS_URL: not set" in message
    assert "docker: not tried (--redis-server given)" in message
    assert f"embedded: {path} exited 3: FATAL CONFIG FILE ERROR: boom" in message


def test_server_that_never_answers_fails_within_the_bound(tmp_path: Path) -> None:
    """A binary that never answers PING fails after startup_timeout, and is killed."""
    path = fake_server(tmp_path, "echo starting; exec sleep 30")
    server = EmbeddedServer(probe_binary(path), tmp_path / "s", startup_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not answer PING .* within 0.3s: starting"):
        server.start()
    assert time.monotonic() - started < 3
    assert not server.running


def test_missing_binary_is_reported(tmp_path: Path) -> None:
    """An explicit binary that does not exist is named as not found."""
    with pytest.raises(ServerStartError, match="not found"):
        probe_binary(tmp_path / "nope")
