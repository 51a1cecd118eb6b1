"""Option checking: bad configuration fails at construction, naming the option."""

from __future__ import annotations

import dataclasses
import re
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, StoreConfig
from agentmem.config import POOL_OPTIONS


def _readme_defaults() -> dict[str, str]:
    """``option -> default`` from the README's Configuration table (rows naming one or two options)."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    table = text[text.index("## Configuration") :]
    table = table[: table.index("\n\n", table.index("| option |"))]
    defaults: dict[str, str] = {}
    for row in re.finditer(r"^\| (`[^|]+`) \| (`[^|]+`) \|", table, re.MULTILINE):
        names = re.findall(r"`(\w+)`", row.group(1))
        values = re.findall(r"`([^`]+)`", row.group(2))
        if len(names) == len(values):
            defaults.update(zip(names, values, strict=True))
    return defaults


def test_defaults_match_the_readme() -> None:
    """Every option has a row in the README's Configuration table, with the real default."""
    documented = _readme_defaults()
    for option in dataclasses.fields(StoreConfig):
        assert option.name in documented, f"{option.name} is missing from the README's table"
        default = getattr(StoreConfig(), option.name)
        shown = documented[option.name]
        expected = f'"{default}"' if isinstance(default, str) else str(default)
        assert shown in (expected, str(default).removesuffix(".0")), (option.name, shown, default)


def test_durations_accept_timedelta() -> None:
    """A timedelta is normalised to seconds."""
    config = StoreConfig.from_options(ttl=timedelta(minutes=2), profile_ttl=timedelta(days=1))
    assert config.ttl == 120.0
    assert config.profile_ttl == 86400.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"max_connections": 0}, "max_connections"),
        ({"retries": -1}, "retries"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "a{b"}, "prefix"),
        ({"prefix": "support bot"}, "prefix"),
        ({"prefix": "bot\x1b"}, "prefix"),
        ({"fallback": "ignore"}, "fallback"),
        ({"max_history": True}, "max_history"),
    ],
)
def test_bad_options_raise(options: dict[str, object], message: str) -> None:
    """Each bad option raises ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        StoreConfig.from_options(**options)


def test_unknown_option_is_named() -> None:
    """A misspelt option raises TypeError that names it."""
    with pytest.raises(TypeError, match="max_conections"):
        StoreConfig.from_options(max_conections=3)


_POOL_OPTION_VALUES: dict[str, Any] = {
    "client_name": "name",
    "username": "agent",
    "password": "pw",
    "ssl_ca_certs": "ca.pem",
    "ssl_certfile": "client.pem",
    "ssl_keyfile": "client.key",
    "ssl_cert_reqs": "required",
    "ssl_check_hostname": False,
    "ssl_context": ssl.create_default_context(),
}


@pytest.mark.parametrize("option", POOL_OPTIONS)
async def test_pool_options_with_a_caller_client_are_refused(agentmem_redis: Redis, option: str) -> None:
    """A pool option passed with the caller's own client raises TypeError naming it, keyword or config."""
    options: dict[str, Any] = {option: _POOL_OPTION_VALUES.get(option, 7)}
    if option == "ssl_keyfile":
        options["ssl_certfile"] = "client.pem"  # a key alone is refused by the config itself
    with pytest.raises(TypeError, match=option):
        AgentMemoryStore(agentmem_redis, **options)
    with pytest.raises(TypeError, match=option):
        AgentMemoryStore(agentmem_redis, config=StoreConfig.from_options(**options))
    AgentMemoryStore(agentmem_redis, prefix="p", ttl=5, retries=1)  # the store's own options are fine


async def test_url_query_options_become_the_config(agentmem_server: Any, agentmem_prefix: str) -> None:
    """?socket_timeout=&max_connections=&timeout=&client_name= are the pool's settings and store.config's."""
    name = f"{agentmem_prefix}-url"[-40:].replace(":", "-")
    url = (
        f"{agentmem_server.url}?socket_timeout=9&max_connections=3&timeout=4.5"
        f"&socket_connect_timeout=2&health_check_interval=11&client_name={name}"
    )
    async with AgentMemoryStore.from_url(url, prefix=agentmem_prefix) as store:
        config = store.config
        assert (config.socket_timeout, config.max_connections, config.pool_timeout) == (9.0, 3, 4.5)
        assert (config.socket_connect_timeout, config.health_check_interval) == (2.0, 11.0)
        pool = store.client.connection_pool
        assert pool.max_connections == 3
        assert pool.connection_kwargs["socket_timeout"] == 9.0
        assert pool.connection_kwargs["health_check_interval"] == 11.0
        assert pool.timeout == 4.5  # type: ignore[attr-defined]
        await store.load_context("s")
        clients = await store.client.client_list()
        # the server saw it (on the connection the pipeliner keeps, and on client_list's own)
        assert name in {c["name"] for c in clients}


def test_an_option_in_the_url_and_a_keyword_is_refused() -> None:
    """The same option in the URL and as a keyword raises TypeError naming it, before connecting."""
    with pytest.raises(TypeError, match="max_connections"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0?max_connections=999", max_connections=4)
    with pytest.raises(InvalidArgumentError, match="socket_timeout"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0?socket_timeout=soon")


def test_credentials_in_the_url_and_as_a_keyword_are_refused() -> None:
    """Credentials in the URL and as keywords: TypeError naming the option, no password shown."""
    with pytest.raises(TypeError, match="password is given both") as info:
        AgentMemoryStore.from_url("redis://agent:url-secret@127.0.0.1:1/0", password="kw-secret")
    assert "url-secret" not in str(info.value)
    assert "kw-secret" not in str(info.value)
    with pytest.raises(TypeError, match="username is given both"):
        AgentMemoryStore.from_url("redis://agent:pw@127.0.0.1:1/0", username="other")
    with pytest.raises(TypeError, match="ssl_ca_certs"):
        AgentMemoryStore.from_url("rediss://127.0.0.1:1/0?ssl_ca_certs=/a.pem", ssl_ca_certs="/b.pem")


async def test_url_credentials_become_the_config_and_leave_the_url() -> None:
    """redis://user:p%40ss@host: config.username/password hold them (decoded), repr shows no password."""
    store = AgentMemoryStore.from_url("redis://agent:p%40ss-word@127.0.0.1:1/0")
    try:
        assert (store.config.username, store.config.password) == ("agent", "p@ss-word")
        assert "p@ss-word" not in repr(store.config)
        assert "p%40ss" not in repr(store.config)
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("agent", "p@ss-word")
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ssl_ca_certs": "/ca.pem"}, InvalidArgumentError, "needs a rediss:// URL"),
        ({"ssl_context": ssl.create_default_context()}, InvalidArgumentError, "needs a rediss:// URL"),
    ],
)
def test_tls_options_need_a_rediss_url(options: dict[str, Any], error: type[Exception], message: str) -> None:
    """TLS options with a redis:// URL raise at once instead of connecting in clear text."""
    with pytest.raises(error, match=message):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0", **options)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ssl_context": ssl.create_default_context(), "ssl_ca_certs": "/ca.pem"}, TypeError, "not both"),
        ({"ssl_context": "ctx"}, TypeError, "ssl_context must be an ssl.SSLContext"),
        ({"ssl_keyfile": "/k.pem"}, InvalidArgumentError, "ssl_keyfile needs ssl_certfile"),
        ({"ssl_cert_reqs": "maybe"}, InvalidArgumentError, "ssl_cert_reqs"),
        ({"ssl_cert_reqs": "none", "ssl_check_hostname": True}, InvalidArgumentError, "ssl_check_hostname"),
        ({"password": ""}, InvalidArgumentError, "password must be a non-empty str"),
        ({"ssl_ca_certs": 5}, TypeError, "ssl_ca_certs must be a file path"),
    ],
)
def test_bad_tls_and_credential_options_raise(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Contradictory or mistyped TLS/credential options raise naming the option."""
    with pytest.raises(error, match=message):
        StoreConfig.from_options(**options)


async def test_tls_options_reach_the_pool() -> None:
    """ssl_* keywords are the pool's connection settings; ssl_cert_reqs='none' turns hostname checks off."""
    store = AgentMemoryStore.from_url(
        "rediss://127.0.0.1:1/0", ssl_ca_certs=Path("/ca.pem"), ssl_cert_reqs="none", password="pw"
    )
    try:
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["ssl_ca_certs"], kwargs["ssl_cert_reqs"]) == ("/ca.pem", "none")
        assert kwargs["ssl_check_hostname"] is False
        assert store.config.ssl_ca_certs == "/ca.pem"
    finally:
        await store.aclose()
