"""The one boundary where redis-py errors become agentmem errors."""

from __future__ import annotations

import asyncio
import re
import ssl

from redis import exceptions as rexc

from agentmem.errors import (
    AgentMemoryError,
    MemoryFullError,
    MemoryPermissionError,
    MemoryUnavailableError,
)

__all__ = ["connection_refused", "is_permission", "is_transient", "translate"]

# Errors after which the same call can succeed if it is sent again: the network
# dropped, the server is restarting (LOADING), a failover made it a replica
# (READONLY), the cluster is moving slots (TRYAGAIN), or the pool had no free
# connection in time. NOSCRIPT is handled where scripts are run, not here.
_TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError and MaxConnectionsError
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.ClusterDownError,  # includes MasterDownError
    asyncio.TimeoutError,
    ConnectionResetError,
    BrokenPipeError,
)


# redis-py files WRONGPASS/NOAUTH under ConnectionError; they are refusals, not outages.
_PERMISSION: tuple[type[BaseException], ...] = (
    rexc.AuthenticationError,
    rexc.AuthorizationError,
    rexc.AuthenticationWrongNumberOfArgsError,
    rexc.NoPermissionError,
)
_PERMISSION_REPLIES = ("NOPERM", "WRONGPASS", "NOAUTH")
# A command inside a script that the user's ACL does not allow: Redis 6.2/7.0 say "The user
# executing the script can't run this command...", Redis 7.2+ and Valkey "ACL failure in
# script: User ... has no permissions to run ...".
_SCRIPT_ACL_REFUSALS = ("user executing the script can't run", "ACL failure in script")


def is_permission(exc: BaseException) -> bool:
    """The server refused these credentials or this command (ACL): repeating cannot help."""
    if isinstance(exc, _PERMISSION):
        return True
    if not isinstance(exc, rexc.ResponseError):
        return False
    text = str(exc)
    return text.startswith(_PERMISSION_REPLIES) or any(refusal in text for refusal in _SCRIPT_ACL_REFUSALS)


# TLS failures no retry can fix: this side refused the server (certificate, protocol), or
# the server's alert refused this client's certificate (mutual TLS). Under TLS 1.3 the
# server's alert arrives on the first read after the handshake, so it is looked for in
# read errors too, not only in connect errors.
_SERVER_REFUSED_CLIENT_CERT = (
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
)
_TLS_REFUSED_REASONS = ("WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", *_SERVER_REFUSED_CLIENT_CERT)


def _tls_refused(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a connect or read failure that no retry can fix."""
    seen: BaseException | None = exc
    for _ in range(4):  # redis-py raises ConnectionError inside ``except OSError``
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError) or (
            isinstance(seen, ssl.SSLError) and seen.reason in _TLS_REFUSED_REASONS
        ):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_hint(tls: ssl.SSLError) -> str:
    if tls.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the server requires a client certificate (mutual TLS): pass ssl_certfile and ssl_keyfile"
    if tls.reason in _SERVER_REFUSED_CLIENT_CERT:
        return (
            "the server refused this client's certificate (mutual TLS): check ssl_certfile/ssl_keyfile "
            "and that the server's tls-ca-cert-file signed them"
        )
    return "check ssl_ca_certs / the server's certificate and hostname, and that the port speaks TLS"


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the same call may succeed (and the failure says the server is unreachable)."""
    return isinstance(exc, _TRANSIENT) and not is_permission(exc) and _tls_refused(exc) is None


_CONNECTING_TO = re.compile(r"connecting to (\S+?:\d+)")


def connection_refused(exc: BaseException) -> str | None:
    """What to tell a caller whose connection was refused (nothing listens at the address),
    or ``None`` for any other failure: a refusal is not a server that "did not answer"."""
    seen: BaseException | None = exc
    for _ in range(4):  # redis-py raises ConnectionError from the socket's OSError
        if seen is None:
            return None
        if (
            isinstance(seen, ConnectionRefusedError)
            or "Connection refused" in str(seen)
            or (isinstance(seen, rexc.ConnectionError) and str(seen).startswith("Error 111 "))
        ):
            match = _CONNECTING_TO.search(str(exc))
            where = match.group(1) if match else "the address in the URL"
            return (
                f"connection refused: is a server running at {where}? Start one (redis-server, "
                "valkey-server, or with no install the throwaway embedded server of the README's "
                "Quickstart) or pass the URL of yours"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _is_oom(exc: BaseException) -> bool:
    # Redis >= 7 replies -OOM (redis-py: OutOfMemoryError); Redis 6.2 wraps a script's
    # OOM as "ERR Error running script ... -OOM command not allowed ...".
    return isinstance(exc, rexc.OutOfMemoryError) or (
        isinstance(exc, rexc.ResponseError) and "OOM command not allowed" in str(exc)
    )


def translate(exc: BaseException, *, operation: str, attempts: int = 1) -> AgentMemoryError:
    """Map a redis-py (or socket) error to the agentmem error a caller should see."""
    if isinstance(exc, AgentMemoryError):
        return exc
    if _is_oom(exc):
        return MemoryFullError(
            f"{operation}: the server refused the write for lack of memory "
            f"(maxmemory reached under noeviction); nothing was written: {exc}"
        )
    if is_permission(exc):
        return MemoryPermissionError(
            f"{operation}: the server refused this client ({type(exc).__name__}: {exc}); check the "
            f"username, password and ACL rules (`agentmem acl --prefix P --user U` prints the rule a "
            f"store needs: its key prefix, EVALSHA, SCRIPT LOAD, PING and its scripts' commands); "
            f"not retried, nothing was written"
        )
    tls = _tls_refused(exc)
    if tls is not None:
        return AgentMemoryError(
            f"{operation}: TLS handshake refused ({tls.reason or type(tls).__name__}: {tls}); "
            f"{_tls_hint(tls)}; not retried, nothing was sent"
        )
    if is_transient(exc):
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        refused = connection_refused(exc)
        if refused is not None:
            return MemoryUnavailableError(f"{operation}: {refused} ({tries}: {type(exc).__name__}: {exc})")
        return MemoryUnavailableError(
            f"{operation}: Redis unavailable after {tries}: {type(exc).__name__}: {exc}"
        )
    return AgentMemoryError(f"{operation}: Redis error: {type(exc).__name__}: {exc}")
