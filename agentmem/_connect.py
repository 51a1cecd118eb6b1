"""The connection pool ``from_url`` builds: bounded, blocking, no redis-py retries, and
the credentials and TLS settings of :class:`~agentmem.StoreConfig`."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.config import TLS_FILE_OPTIONS, StoreConfig
from agentmem.errors import InvalidArgumentError
from agentmem.sentinel import BlockingSentinelPool, parse_sentinel_url, sentinel_pool

__all__ = ["ContextSSLConnection", "build_pool", "build_sentinel_pool"]


class ContextSSLConnection(SSLConnection):
    """A TLS connection that uses the caller's ``ssl.SSLContext`` as is.

    redis.asyncio builds its own context from ``ssl_*`` file options and has no
    ``ssl_context`` parameter (redis 6.0 to 8.x); every connection it opens asks
    ``_connection_arguments()`` for the ``ssl=`` it hands to ``asyncio.open_connection``.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._agentmem_ssl_context = ssl_context

    def _connection_arguments(self) -> Mapping[Any, Any]:
        arguments = dict(super()._connection_arguments())
        arguments["ssl"] = self._agentmem_ssl_context
        return arguments


def _tls_arguments(url: str, config: StoreConfig) -> dict[str, Any]:
    given = config.tls_options_given
    if not given:
        return {}
    scheme = urlsplit(url).scheme
    if scheme not in ("rediss", "rediss+sentinel"):
        raise InvalidArgumentError(
            f"{', '.join(given)} configure TLS, which needs a rediss:// URL "
            f"(rediss+sentinel:// with Sentinel); this one is {scheme}://"
        )
    if config.ssl_context is not None:
        return {"ssl_context": config.ssl_context}
    arguments = {
        name: getattr(config, name) for name in TLS_FILE_OPTIONS if getattr(config, name) is not None
    }
    if config.ssl_cert_reqs in ("none", ssl.CERT_NONE) and config.ssl_check_hostname is None:
        arguments["ssl_check_hostname"] = False  # no certificate check means no name to check
    return arguments


def _credentials(config: StoreConfig) -> dict[str, Any]:
    return {
        name: getattr(config, name) for name in ("username", "password") if getattr(config, name) is not None
    }


def build_sentinel_pool(
    url: str, config: StoreConfig, *, sentinel_kwargs: Mapping[str, Any] | None = None
) -> BlockingSentinelPool:
    """The pool for a ``redis+sentinel://`` URL (credentials already moved into ``config``):
    Sentinel-routed, waiting, no redis-py retries, the same credentials and TLS options."""
    target = parse_sentinel_url(url)
    tls = _tls_arguments(url, config)
    if "ssl_context" in tls:
        raise InvalidArgumentError(
            "ssl_context is not supported with Sentinel (redis-py builds each Sentinel-routed "
            "connection's TLS itself); use ssl_ca_certs / ssl_certfile / ssl_keyfile"
        )
    return sentinel_pool(
        target.sentinels,
        target.service_name,
        max_connections=config.max_connections,
        pool_timeout=config.pool_timeout,
        socket_timeout=config.socket_timeout,
        socket_connect_timeout=config.socket_connect_timeout,
        sentinel_kwargs=sentinel_kwargs,
        client_name=config.client_name,
        health_check_interval=config.health_check_interval,
        decode_responses=False,
        db=target.db,
        ssl=target.ssl,
        **_credentials(config),
        **tls,
    )


def build_pool(url: str, config: StoreConfig) -> BlockingConnectionPool:
    """The pool for ``url`` (its pool options and credentials already moved into ``config``
    by :func:`~agentmem.config.options_from_url`).

    A burst of calls waits up to ``pool_timeout`` for a free connection instead of
    failing with "Too many connections". The pool's own retry policy is set to zero
    retries on purpose: the store retries (with a deadline and a breaker) one level up.
    """
    credentials = _credentials(config)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout,
        socket_timeout=config.socket_timeout,
        socket_connect_timeout=config.socket_connect_timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=config.client_name,
        health_check_interval=config.health_check_interval,
        decode_responses=False,
        **credentials,
        **_tls_arguments(url, config),
    )
    if config.ssl_context is not None:
        # from_url() lets the URL's scheme pick the connection class over a keyword one.
        pool.connection_class = ContextSSLConnection
    return pool
