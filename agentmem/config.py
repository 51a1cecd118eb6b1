"""One frozen object holds every option of a store, with its default and its check."""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from agentmem.errors import InvalidArgumentError

__all__ = [
    "MAX_EXACT",
    "MAX_TTL",
    "POOL_OPTIONS",
    "TLS_OPTIONS",
    "CertReqs",
    "Duration",
    "StoreConfig",
    "options_from_url",
    "seconds",
    "validate_prefix",
]

Duration = float | timedelta
#: How strictly the server's certificate is checked (redis-py's ``ssl_cert_reqs``).
CertReqs = Literal["required", "optional", "none"] | ssl.VerifyMode
_CERT_REQS = ("required", "optional", "none")

_FORBIDDEN_IN_PREFIX = frozenset("{}")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if a store can use it, else raise :class:`InvalidArgumentError`.

    Refused: ``{``/``}`` (they would change the cluster hash slot), and whitespace or any
    non-printable character: an ACL rule's key pattern (``~<prefix>:{*``, see ``agentmem
    acl``) cannot carry them, nor can a ``redis-cli`` line or a log line show them plainly.
    """
    if not isinstance(prefix, str) or not prefix:
        raise InvalidArgumentError("prefix must be a non-empty string")
    if _FORBIDDEN_IN_PREFIX & set(prefix):
        raise InvalidArgumentError(
            "prefix must not contain '{' or '}' (they would change the cluster hash slot)"
        )
    bad = sorted({ch for ch in prefix if ch.isspace() or not ch.isprintable()})
    if bad:
        raise InvalidArgumentError(
            f"prefix {prefix!r} must not contain whitespace or non-printable characters "
            f"({', '.join(map(repr, bad))}): an ACL rule's key pattern cannot carry them; "
            "use '-', '_' or '.' instead"
        )
    return prefix


#: Options of earlier versions whose meaning is gone, and what replaced them.
_REMOVED = {
    "breaker_cooldown": (
        "since 0.2 an open breaker probes the server by itself (every breaker_probe_interval at "
        "most), callers wait for the probe within their retry_deadline, and only an outage older "
        "than retry_deadline fails fast; set breaker_probe_interval instead"
    ),
}

#: Largest integer a script takes for a TTL in ms or a count: Lua numbers are doubles,
#: exact up to 2**53, and a TTL this long still cannot overflow the server's clock.
#: The scripts get it as their ``@MAX_EXACT@`` constant (:mod:`agentmem.scripts`).
MAX_EXACT = 2**53 - 1

#: Longest ``ttl``/``profile_ttl`` in seconds (~285,000 years): the TTL goes to the server
#: in ms, and must stay an exact integer inside a Lua script and far from overflowing
#: the server's clock (Redis 6.2 does not check that sum).
MAX_TTL = MAX_EXACT // 1000


def seconds(value: Duration | None, *, name: str, allow_none: bool = False) -> float | None:
    """Normalise a duration option to positive seconds, or raise InvalidArgumentError naming it."""
    if value is None:
        if allow_none:
            return None
        raise InvalidArgumentError(f"{name} must be a positive duration, not None")
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds (int/float) or a timedelta, not {type(value).__name__}")
    if value <= 0:
        raise InvalidArgumentError(f"{name} must be > 0 seconds, got {value}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Options of an :class:`~agentmem.AgentMemoryStore`; all durations are in seconds.

    ``from_url`` and the store constructor take these same names as keyword arguments.
    """

    prefix: str = "agentmem"
    #: Lifetime of a session's keys (context, history); reset by every write and,
    #: with ``sliding_ttl``, by every read.
    ttl: float = 3600.0
    sliding_ttl: bool = True
    #: Lifetime of a user's long-term facts; ``None`` keeps them until ``forget_user``.
    profile_ttl: float | None = None
    max_history: int = 200
    max_value_bytes: int = 1024 * 1024
    max_connections: int = 32
    pool_timeout: float = 2.0
    socket_timeout: float = 1.0
    socket_connect_timeout: float = 1.0
    #: Retries after the first attempt, for transient errors only. The deadline is the
    #: real bound; the count only stops a fast-failing server from being hammered.
    retries: int = 8
    #: No retry starts after this many seconds from the first attempt; a caller waits
    #: this long for an open breaker's probe, and an outage older than this fails fast.
    retry_deadline: float = 2.0
    retry_base_delay: float = 0.05
    retry_max_delay: float = 0.5
    #: Consecutive failed round trips that open the circuit breaker; 0 disables it.
    breaker_threshold: int = 5
    #: Longest pause between two probes of an open breaker (the first comes after 20 ms).
    breaker_probe_interval: float = 0.5
    #: A pooled connection idle longer than this is PINGed before use (keep it above the
    #: server's ``timeout``, see ``agentmem doctor``).
    health_check_interval: float = 30.0
    #: Name shown in CLIENT LIST for the store's connections (pool the store owns only).
    client_name: str | None = None
    #: ACL user and password (``AUTH``/``HELLO`` on every new connection); the URL's
    #: ``redis://user:password@host`` credentials land here. Never shown by ``repr``.
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    #: TLS (``rediss://`` URLs only). File paths, as redis-py takes them; ``None`` keeps
    #: redis-py's default (the system trust store, certificate and hostname checked).
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: CertReqs | None = None
    ssl_check_hostname: bool | None = None
    #: A ready ``ssl.SSLContext`` instead of the ``ssl_*`` options above (pinning, an
    #: in-memory CA, a custom trust store): used as is for every connection.
    ssl_context: ssl.SSLContext | None = None
    #: Batch the calls concurrent tasks make in one event-loop iteration into one round trip.
    auto_pipeline: bool = True
    #: Acknowledge a write only once this many replicas have it (one ``WAIT`` per pipeline
    #: of writes); fewer within ``wait_timeout`` raises ReplicationTimeoutError. 0: off.
    wait_replicas: int = 0
    #: How long ``WAIT`` waits for the replicas (a pipeline carrying ``WAIT`` is read under
    #: ``socket_timeout + wait_timeout``).
    wait_timeout: float = 0.5
    fallback: Literal["raise", "journal"] = "raise"
    journal_max_sessions: int = 10_000
    journal_max_bytes: int = 64 * 1024 * 1024
    #: OpenTelemetry spans and metrics on the global providers (``agentmem-redis[otel]``).
    telemetry: bool = False
    #: What turns text into vectors for ``store.memories`` (recall by meaning): a LangChain
    #: ``Embeddings``, an object with ``embed(texts)`` (sync or async), or a callable
    #: ``texts -> vectors`` (sync or async). ``None``: ``store.memories`` refuses to run.
    embedder: Any = dataclasses.field(default=None, repr=False)
    #: The memories index: ``"flat"`` (exact KNN, the default) or ``"hnsw"`` (approximate,
    #: for stores that mostly search across all users).
    memory_index: Literal["flat", "hnsw"] = "flat"

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)
        for name in (
            "ttl",
            "pool_timeout",
            "socket_timeout",
            "socket_connect_timeout",
            "retry_deadline",
            "retry_base_delay",
            "retry_max_delay",
            "breaker_probe_interval",
            "health_check_interval",
            "wait_timeout",
        ):
            object.__setattr__(self, name, seconds(getattr(self, name), name=name))
        object.__setattr__(
            self, "profile_ttl", seconds(self.profile_ttl, name="profile_ttl", allow_none=True)
        )
        for name, low in (
            ("max_history", 1),
            ("max_value_bytes", 1),
            ("max_connections", 1),
            ("retries", 0),
            ("wait_replicas", 0),
            ("breaker_threshold", 0),
            ("journal_max_sessions", 1),
            ("journal_max_bytes", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")
        # Values the server receives: bounded so every server takes them (see MAX_TTL).
        for name in ("ttl", "profile_ttl"):
            value = getattr(self, name)
            if value is not None and value > MAX_TTL:
                raise InvalidArgumentError(f"{name} must be at most {MAX_TTL} seconds, got {value}")
        if self.max_history > MAX_EXACT:
            raise InvalidArgumentError(f"max_history must be at most {MAX_EXACT}, got {self.max_history}")
        if not isinstance(self.telemetry, bool):
            raise InvalidArgumentError(f"telemetry must be True or False, got {self.telemetry!r}")
        if self.fallback not in ("raise", "journal"):
            raise InvalidArgumentError(f"fallback must be 'raise' or 'journal', got {self.fallback!r}")
        if self.memory_index not in ("flat", "hnsw"):
            raise InvalidArgumentError(f"memory_index must be 'flat' or 'hnsw', got {self.memory_index!r}")
        if self.embedder is not None:
            from agentmem.memories.embedder import check_embedder

            check_embedder(self.embedder)
        self._check_credentials_and_tls()

    def _check_credentials_and_tls(self) -> None:
        for name in ("username", "password", "client_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                # Never echo the value: it may be a password.
                raise InvalidArgumentError(f"{name} must be a non-empty str or None")
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise TypeError(
                        f"{name} must be a file path (str or os.PathLike), not {type(value).__name__}"
                    )
                object.__setattr__(self, name, os.fspath(value))
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise InvalidArgumentError(
                "ssl_keyfile needs ssl_certfile (the client certificate it belongs to)"
            )
        reqs = self.ssl_cert_reqs
        if reqs is not None and not isinstance(reqs, ssl.VerifyMode) and reqs not in _CERT_REQS:
            raise InvalidArgumentError(
                f"ssl_cert_reqs must be 'required', 'optional', 'none' or an ssl.VerifyMode, got {reqs!r}"
            )
        if self.ssl_check_hostname is not None and not isinstance(self.ssl_check_hostname, bool):
            raise TypeError(
                f"ssl_check_hostname must be a bool, not {type(self.ssl_check_hostname).__name__}"
            )
        if self.ssl_check_hostname and reqs in ("none", ssl.CERT_NONE):
            raise InvalidArgumentError(
                "ssl_check_hostname=True needs a verified certificate; it cannot go with ssl_cert_reqs='none'"
            )
        if self.ssl_context is not None:
            if not isinstance(self.ssl_context, ssl.SSLContext):
                raise TypeError(
                    f"ssl_context must be an ssl.SSLContext, not {type(self.ssl_context).__name__}"
                )
            mixed = [name for name in TLS_FILE_OPTIONS if getattr(self, name) is not None]
            if mixed:
                raise TypeError(
                    f"ssl_context already holds the TLS settings; give either it or {', '.join(mixed)}, "
                    "not both"
                )

    @property
    def tls_options_given(self) -> list[str]:
        """The TLS options set, which only a ``rediss://`` URL can use."""
        return [name for name in TLS_OPTIONS if getattr(self, name) is not None]

    @classmethod
    def from_options(cls, **options: Any) -> StoreConfig:
        """Build a config, naming any unknown option instead of a bare TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        for old, why in _REMOVED.items():
            if old in options:
                raise TypeError(f"store option {old} was removed: {why}")
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown store option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)


#: Options that configure the connection pool ``from_url`` builds. A client the caller
#: passes in keeps its own pool, so the store refuses them there instead of ignoring them.
#: The TLS options ``ssl_context`` replaces.
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
#: Options that make sense only over TLS (a ``rediss://`` URL).
TLS_OPTIONS = (*TLS_FILE_OPTIONS, "ssl_context")

POOL_OPTIONS = (
    "client_name",
    "health_check_interval",
    "max_connections",
    "password",
    "pool_timeout",
    "socket_connect_timeout",
    "socket_timeout",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_check_hostname",
    "ssl_context",
    "ssl_keyfile",
    "username",
)


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(text)


# URL query parameters redis-py reads into the pool, and the store option each one is.
_URL_OPTIONS: dict[str, tuple[str, Any]] = {
    "client_name": ("client_name", str),
    "health_check_interval": ("health_check_interval", float),
    "max_connections": ("max_connections", int),
    "timeout": ("pool_timeout", float),
    "socket_connect_timeout": ("socket_connect_timeout", float),
    "socket_timeout": ("socket_timeout", float),
    "ssl_ca_certs": ("ssl_ca_certs", str),
    "ssl_certfile": ("ssl_certfile", str),
    "ssl_keyfile": ("ssl_keyfile", str),
    "ssl_cert_reqs": ("ssl_cert_reqs", str),
    "ssl_check_hostname": ("ssl_check_hostname", _flag),
}


def options_from_url(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Move the pool options of ``url``'s query string, and its credentials, into the
    store's options.

    Returns the URL without them and the merged options, so ``store.config`` holds the
    values the pool really uses. An option given both ways raises, naming it (never
    showing a password).
    """
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    merged = dict(options)
    if parts.username or parts.password:
        for option, value in (("username", parts.username), ("password", parts.password)):
            if not value:
                continue
            if option in options:
                raise TypeError(
                    f"{option} is given both in the URL (scheme://user:password@host) and as a keyword "
                    "option; give it once"
                )
            merged[option] = unquote(value)
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=host)
    for name, text in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _URL_OPTIONS:
            kept.append((name, text))
            continue
        option, kind = _URL_OPTIONS[name]
        if option in options:
            raise TypeError(
                f"{option} is given both in the URL (?{name}={text}) and as a keyword option; give it once"
            )
        try:
            merged[option] = kind(text)
        except ValueError:
            raise InvalidArgumentError(f"URL parameter {name}={text!r} is not a valid {option}") from None
    return urlunsplit(parts._replace(query=urlencode(kept))), merged
