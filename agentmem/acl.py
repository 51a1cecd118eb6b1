"""The least-privilege ACL rule a store with a given prefix needs (``agentmem acl``).

The one list of the commands a store sends. Every operation is an ``EVALSHA`` of one
of the scripts in :mod:`agentmem.scripts`; since Redis 6 each ``redis.call`` inside a
script is checked against the caller's ACL too, so the commands the scripts call are
read from the scripts themselves and cannot drift from them. Beside those:

* ``SCRIPT LOAD`` after ``NOSCRIPT`` (a fresh server, a restart, a failover);
* ``PING``: redis-py's health check of a connection idle longer than
  ``health_check_interval``, the circuit breaker's probe, and ``health()``'s latency;
* ``AUTH``/``HELLO`` need no grant: every user may authenticate. redis-py's
  ``CLIENT SETINFO`` on connect is not granted either: redis-py ignores its refusal.

Opt-in, because the store works without them:

* ``CLIENT SETNAME`` only with the ``client_name`` option (else no connection can be made);
* ``INFO`` only for ``health()``'s server fields; without it ``health()`` reports
  ``None`` for them and says why in ``skipped``;
* ``CONFIG GET`` only with ``max_value_bytes`` above 1 MiB, to read the server's
  ``proto-max-bulk-len``; without it the store assumes the 512 MiB default;
* ``cluster``: a store on a Redis Cluster reads the slot map (``CLUSTER SLOTS``), follows
  ``ASK`` redirections (``ASKING``) and, with ``from_url(cluster=None)`` (the default),
  asks the node whether it is a cluster node (``INFO``); the rule goes on every node;
* ``wait_replicas``: every pipeline of writes ends with ``WAIT``.

The framework adapters (``agentmem.integrations``) run scripts of their own and send a few
plain commands; ``integrations=("langgraph", ...)`` adds what each needs, read from its
script modules the same way (so the adapter's extra must be installed).

``memories=True`` (``agentmem acl --memories``) adds what ``store.memories`` sends: ``FT.*``
on its index (whose name matches the key pattern below, as the search module checks it as a
key), the hash reads and deletes, and ``CLUSTER SLOTS``; nothing else.

Keys: the pattern ``<prefix>:{*`` (glob characters of the prefix escaped) matches every
key of the store and nothing else: a store's keys all start ``<prefix>:{`` (hash tag),
and a prefix cannot hold ``{``, so a neighbour whose prefix extends this one
(``tenantA:eu`` beside ``tenantA``) stays out. No pub/sub channels.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterable
from types import ModuleType

from agentmem import scripts
from agentmem.config import validate_prefix
from agentmem.keys import escape_glob

__all__ = [
    "INTEGRATIONS",
    "SCRIPT_COMMANDS",
    "TRANSACTION_COMMANDS",
    "acl_rule",
    "acl_setuser_args",
    "integration_commands",
    "key_pattern",
    "memories_commands",
    "store_commands",
]

_CALL = re.compile(r"redis\.p?call\(\s*['\"](\w+)['\"]")


def _script_commands(*modules: ModuleType) -> tuple[str, ...]:
    """The commands the ``Script`` objects of these modules call (lower case, as ACL rules name them)."""
    return tuple(
        sorted(
            {
                name.lower()
                for module in modules
                for script in vars(module).values()
                if isinstance(script, scripts.Script)
                for name in _CALL.findall(script.body)
            }
        )
    )


#: Commands the store's scripts run (lower case, as ACL rules name them).
SCRIPT_COMMANDS: tuple[str, ...] = _script_commands(scripts)

#: Per framework adapter: the modules holding its scripts, and the commands it sends itself.
INTEGRATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai-agents": (("agentmem.integrations.openai_agents",), ()),
    "adk": (("agentmem.integrations.adk_scripts",), ("scan", "zrange")),
    "langgraph": (
        ("agentmem.integrations.langgraph._saver_scripts", "agentmem.integrations.langgraph._store_scripts"),
        ("scan", "smembers", "unlink"),
    ),
    # LangGraphStore(index=...): the same, plus the query engine on its index (whose name
    # `<prefix>:{lgs}:vidx` matches the key pattern, as the search module checks it as a key)
    "langgraph-index": (
        ("agentmem.integrations.langgraph._saver_scripts", "agentmem.integrations.langgraph._store_scripts"),
        ("scan", "smembers", "unlink", "ft.create", "ft.info", "ft.search"),
    ),
}


def integration_commands(name: str) -> tuple[str, ...]:
    """What the adapter ``name`` (a key of :data:`INTEGRATIONS`) sends beyond the store's commands."""
    if name not in INTEGRATIONS:
        raise ValueError(f"unknown integration {name!r}: one of {', '.join(INTEGRATIONS)}")
    module_names, direct = INTEGRATIONS[name]
    try:
        modules = [importlib.import_module(module) for module in module_names]
    except ImportError as exc:
        raise ValueError(
            f"the {name} adapter's scripts cannot be read without its framework: "
            f"pip install 'agentmem-redis[{name}]' ({exc})"
        ) from exc
    return tuple(sorted(set(_script_commands(*modules)) | set(direct)))


#: Commands the store sends itself, whatever its options.
_ALWAYS = ("evalsha", "script|load", "ping")
#: What the store's transactions send (a plain save, load_context: agentmem.writes.save_call,
#: agentmem.reads.context_read), with MULTI/EXEC around them.
TRANSACTION_COMMANDS = ("multi", "exec", "set", "del", "pexpire", "hgetall", "mget")


def memories_commands() -> tuple[str, ...]:
    """What ``store.memories`` sends beyond the store's commands: its script's commands, the
    query engine's ``FT.*`` on its index (create, info, search; ``FT._LIST`` to learn whether
    the server has one), reads and deletes of memory hashes, and ``CLUSTER SLOTS`` to name
    each primary's index on a cluster."""
    from agentmem.memories import api

    direct = (
        "ft.create",
        "ft.info",
        "ft.search",
        "ft._list",
        "hmget",
        "exists",
        "del",
        "unlink",
        "cluster|slots",
    )
    return tuple(sorted(set(_script_commands(api)) | set(direct)))


def store_commands(
    *,
    client_name: bool = False,
    health: bool = False,
    large_values: bool = False,
    cluster: bool = False,
    wait_replicas: bool = False,
    integrations: Iterable[str] = (),
    memories: bool = False,
) -> tuple[str, ...]:
    """Every command a store sends: always the scripts', the transactions' (``MULTI``/``EXEC``,
    :data:`TRANSACTION_COMMANDS`) and ``EVALSHA``/``SCRIPT LOAD``/``PING``;
    ``CLIENT SETNAME`` with ``client_name``, ``INFO`` for ``health``, ``CONFIG GET`` for
    ``large_values`` (``max_value_bytes`` over 1 MiB), ``CLUSTER SLOTS``/``ASKING``/``INFO``
    for ``cluster``, ``WAIT`` for ``wait_replicas``, and what each of ``integrations`` adds."""
    options = (
        ("client|setname", client_name),
        ("info", health or cluster),
        ("config|get", large_values),
        ("cluster|slots", cluster),
        ("asking", cluster),
        ("wait", wait_replicas),
    )
    extra = [name for name, given in options if given]
    core = (*_ALWAYS, *extra, *dict.fromkeys((*SCRIPT_COMMANDS, *TRANSACTION_COMMANDS)))
    wanted = {name for adapter in integrations for name in integration_commands(adapter)}
    if memories:
        wanted |= set(memories_commands())
    added = sorted(wanted - set(core))
    return (*core, *added)


def key_pattern(prefix: str) -> str:
    """The ACL key pattern of a store's keys: ``<prefix>:{*`` with the prefix's glob characters escaped."""
    return f"{escape_glob(prefix)}:{{*"


def acl_setuser_args(
    prefix: str,
    user: str,
    *,
    password: str | None = None,
    client_name: bool = False,
    health: bool = False,
    large_values: bool = False,
    cluster: bool = False,
    wait_replicas: bool = False,
    integrations: Iterable[str] = (),
    memories: bool = False,
) -> list[str]:
    """The arguments after ``ACL SETUSER``: ``<user> reset on [#<sha256>] ~<pattern> -@all +...``.

    ``reset`` first, so running the rule again replaces what the user had instead of
    adding to it. The password goes in as its SHA-256 (``#...``), never in clear text.
    """
    validate_prefix(prefix)
    if not user or any(ch.isspace() for ch in user):
        raise ValueError(f"user must be a non-empty name without spaces, got {user!r}")
    args = [user, "reset", "on"]
    if password is not None:
        if not password:
            raise ValueError("password must not be empty")
        args.append("#" + hashlib.sha256(password.encode()).hexdigest())
    args += [
        "~" + key_pattern(prefix),
        "-@all",
        *(
            "+" + name
            for name in store_commands(
                client_name=client_name,
                health=health,
                large_values=large_values,
                cluster=cluster,
                wait_replicas=wait_replicas,
                integrations=integrations,
                memories=memories,
            )
        ),
    ]
    return args


def _quote(token: str) -> str:
    if token and not any(ch.isspace() or ch in "\"'\\" for ch in token):
        return token
    escaped = token.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def acl_rule(
    prefix: str,
    user: str,
    *,
    password: str | None = None,
    client_name: bool = False,
    health: bool = False,
    large_values: bool = False,
    cluster: bool = False,
    wait_replicas: bool = False,
    integrations: Iterable[str] = (),
    memories: bool = False,
) -> str:
    """The ``ACL SETUSER`` command line (quoted for ``redis-cli``) of :func:`acl_setuser_args`."""
    args = acl_setuser_args(
        prefix,
        user,
        password=password,
        client_name=client_name,
        health=health,
        large_values=large_values,
        cluster=cluster,
        wait_replicas=wait_replicas,
        integrations=integrations,
        memories=memories,
    )
    return " ".join(["ACL", "SETUSER", *(_quote(arg) for arg in args)])
