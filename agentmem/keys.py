"""The key schema: the only module that builds Redis key strings.

A session's keys share one Redis Cluster hash tag, ``{s:<id>}``, so the context,
the history, the append log and the delete tombstone of one session live in one slot
and one Lua script can touch them all. A user's long-term facts (and their tombstone)
live under ``{u:<id>}``.

Ids are percent-encoded before they go into a key: every byte outside
``[A-Za-z0-9._~-]`` becomes ``%XX``. The encoding is injective (two different ids
never give one key) and its output holds no ``:``, ``{``, ``}``, glob character,
space or non-ASCII byte, so no id can end a hash tag early, collide with another
id, or match keys outside the store's prefix in a SCAN pattern.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from agentmem.errors import InvalidKeyError

__all__ = [
    "MAX_ID_BYTES",
    "AdkSessionKeys",
    "KeySchema",
    "ParsedKey",
    "SessionKeys",
    "decode_id",
    "encode_id",
    "escape_glob",
    "validate_id",
]

#: Longest id accepted, in UTF-8 bytes.
MAX_ID_BYTES = 512

_SAFE = "._~-"  # quote() always keeps ASCII letters and digits


def validate_id(value: object, *, kind: str = "session") -> str:
    """Return ``value`` if it is a usable id, else raise :class:`InvalidKeyError`."""
    if not isinstance(value, str):
        raise InvalidKeyError(f"{kind} id must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidKeyError(f"{kind} id must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidKeyError(f"{kind} id is not valid Unicode text: {exc.reason}") from exc
    if size > MAX_ID_BYTES:
        raise InvalidKeyError(f"{kind} id is {size} bytes in UTF-8; the limit is {MAX_ID_BYTES}")
    return value


@functools.lru_cache(maxsize=4096)  # agents touch the same few ids every turn
def _encode(value: str) -> str:
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def encode_id(value: str) -> str:
    """An id as it appears in a key: percent-encoded UTF-8, keeping only ASCII letters,
    digits and ``._~-``, so distinct ids never share a key and no id reaches glob or
    hash-tag syntax. The one encoding of ids (the adapters' keys use it too)."""
    return _encode(value)


def decode_id(encoded: str) -> str | None:
    """The id :func:`encode_id` turned into ``encoded``, or ``None`` when it cannot have
    produced it (not canonical: such a key is not one of ours)."""
    try:
        decoded = unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return decoded if _encode(decoded) == encoded else None


def escape_glob(text: str) -> str:
    """Escape ``text`` so a SCAN/KEYS ``MATCH`` pattern matches it literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The keys of one session.

    ``context`` is the hash of fields merged by ``update_context`` since the last
    ``save_context``, ``base`` the string holding that save's whole context, ``log`` the
    store's append log (operation ids of recent appends, see ``APPEND``), ``retried`` the
    ids of appends a retry applied (a late first attempt looks there), ``pops`` the
    OpenAI adapter's log of popped items (kept at the name 0.2 gave its append log).
    ``deleted`` is the tombstone ``delete_session`` leaves: the delete's version, so a
    replayed journal write older than the delete is dropped. It is last on purpose:
    scripts find a target's tombstone at ``KEYS[#KEYS]``.
    """

    context: str
    base: str
    history: str
    log: str
    pops: str
    deleted: str
    retried: str

    def all(self) -> tuple[str, str, str, str, str, str]:
        """Every key of the session that holds data, the tombstone last (what
        ``delete_session`` removes). Not ``retried``: a few operation ids, kept through a
        delete until they expire (one de-duplication window), so that the late first attempt
        of an append that a retry applied before the delete still finds its id and does not
        push a message into the deleted session."""
        return (self.context, self.base, self.history, self.log, self.pops, self.deleted)

    def core(self) -> tuple[str, str, str, str]:
        """The keys the store's reads and context writes take: context, base, history, tombstone."""
        return (self.context, self.base, self.history, self.deleted)

    def appending(self) -> tuple[str, str, str, str, str, str]:
        """The keys an append takes: context, base, history, append log, retried ids, tombstone."""
        return (self.context, self.base, self.history, self.log, self.retried, self.deleted)


@dataclass(frozen=True, slots=True)
class AdkSessionKeys:
    """The keys of one Google ADK session (``agentmem.integrations.adk``), in script order.

    All share the hash tag of the session's (app, user) pair, ``{a:<app>:<user>}``, so the
    session's state, its events, the user's ``user:`` state and the user's session index
    sit in one cluster slot and one script updates them together. The app's ``app:``
    state is shared by every user of the app, so it has a tag of its own (``{a:<app>}``).
    """

    state: str
    events: str
    event_ids: str
    index: str
    user_state: str

    def all(self) -> tuple[str, str, str, str, str]:
        return (self.state, self.events, self.event_ids, self.index, self.user_state)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What one key of a store names: a session's or a user's ``part`` (``ctx``, ``base``,
    ``hist``, ``log``, ``appends``, ``deleted``; ``facts``, ``forgotten``), with the id decoded."""

    kind: Literal["session", "user"]
    id: str
    part: str


_SESSION_PARTS = frozenset({"ctx", "base", "hist", "log", "retried", "appends", "deleted"})
_USER_PARTS = frozenset({"facts", "forgotten"})


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds every key of a store from its prefix."""

    prefix: str

    def session(self, session_id: str) -> SessionKeys:
        tag = f"{self.prefix}:{{s:{_encode(validate_id(session_id, kind='session'))}}}"
        return SessionKeys(
            context=f"{tag}:ctx",
            base=f"{tag}:base",
            history=f"{tag}:hist",
            log=f"{tag}:log",
            pops=f"{tag}:appends",
            deleted=f"{tag}:deleted",
            retried=f"{tag}:retried",
        )

    def profile(self, user_id: str) -> str:
        return f"{self._user_tag(user_id)}:facts"

    def profile_keys(self, user_id: str) -> tuple[str, str]:
        """The user's facts and the tombstone ``forget_user`` leaves (last, as for a session)."""
        tag = self._user_tag(user_id)
        return (f"{tag}:facts", f"{tag}:forgotten")

    # -- memories (store.memories: agentmem.memories) -----------------------------------

    def memory(self, user_id: str, memory_id: str) -> str:
        """One memory's hash. A user's memories share the hash tag ``{m:<id>}`` (one slot,
        so one shard, per user), and only memories start with :meth:`memory_prefix`, the
        prefix the memories index covers."""
        return f"{self.prefix}:{{m:{_encode(validate_id(user_id, kind='user'))}}}:{memory_id}"

    def memory_prefix(self) -> str:
        """The key prefix the memories index is built on (``FT.CREATE ... PREFIX``)."""
        return f"{self.prefix}:{{m:"

    def match_memories(self, user_id: str) -> str:
        """A SCAN MATCH pattern for every memory of ``user_id``."""
        return escape_glob(self.memory(user_id, "")) + "*"

    def memory_index(self, tag: str | None = None) -> str:
        """The memories index's name (the search module checks it as a key: it matches the
        store's ACL key pattern). On a cluster one per primary, each named with a hash
        ``tag`` of a slot that primary serves (the module routes ``FT.*`` by the name's slot)."""
        return f"{self.prefix}:{{memidx}}" if tag is None else f"{self.prefix}:{{{tag}}}:memidx"

    def _user_tag(self, user_id: str) -> str:
        return f"{self.prefix}:{{u:{_encode(validate_id(user_id, kind='user'))}}}"

    # -- Google ADK sessions (agentmem.integrations.adk) ---------------------------------

    def _adk_user_tag(self, app_name: str, user_id: str) -> str:
        app = _encode(validate_id(app_name, kind="app"))
        user = _encode(validate_id(user_id, kind="user"))
        return f"{self.prefix}:{{a:{app}:{user}}}"

    def adk_session(self, app_name: str, user_id: str, session_id: str) -> AdkSessionKeys:
        tag = self._adk_user_tag(app_name, user_id)
        session = _encode(validate_id(session_id, kind="session"))
        return AdkSessionKeys(
            state=f"{tag}:s:{session}:state",
            events=f"{tag}:s:{session}:events",
            event_ids=f"{tag}:s:{session}:ids",
            index=f"{tag}:sessions",
            user_state=f"{tag}:state",
        )

    def adk_user(self, app_name: str, user_id: str) -> tuple[str, str]:
        """The (app, user) pair's session index and ``user:`` state."""
        tag = self._adk_user_tag(app_name, user_id)
        return (f"{tag}:sessions", f"{tag}:state")

    def adk_app_state(self, app_name: str) -> str:
        return f"{self.prefix}:{{a:{_encode(validate_id(app_name, kind='app'))}}}:state"

    def adk_match_indexes(self, app_name: str) -> str:
        """A SCAN MATCH pattern for the session index of every user of ``app_name``."""
        app = escape_glob(_encode(validate_id(app_name, kind="app")))
        return f"{escape_glob(self.prefix)}:{{a:{app}:*}}:sessions"

    def adk_user_of_index(self, app_name: str, key: str | bytes) -> str | None:
        """The user id whose session index ``key`` is, or ``None`` for any other key."""
        if isinstance(key, bytes):
            try:
                key = key.decode("ascii")
            except UnicodeDecodeError:
                return None
        head = f"{self.prefix}:{{a:{_encode(validate_id(app_name, kind='app'))}:"
        tail = "}:sessions"
        if not (key.startswith(head) and key.endswith(tail)):
            return None
        encoded = key[len(head) : -len(tail)]
        try:
            decoded = unquote(encoded, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
        return decoded if decoded and _encode(decoded) == encoded else None

    def match_all(self) -> str:
        """A SCAN MATCH pattern for every key of this store and nothing else."""
        return f"{escape_glob(self.prefix)}:{{*"

    def match_sessions(self, id_glob: str = "*") -> str:
        """A SCAN MATCH pattern for the keys of sessions whose id may match ``id_glob``
        (an :func:`fnmatch.fnmatchcase` pattern on the decoded id).

        Ids are percent-encoded in keys, so the pattern is a superset: literal text is
        encoded, ``*`` kept, ``?`` widened to ``*`` (one character of an id can be several
        of its key), and a ``[...]`` class makes it match every session. Filter the keys
        it finds with :meth:`parse` and ``fnmatchcase(parsed.id, id_glob)``.
        """
        if "[" in id_glob:
            encoded = "*"
        else:
            encoded = "".join("*" if ch in "*?" else escape_glob(_encode(ch)) for ch in id_glob)
        return f"{escape_glob(self.prefix)}:{{s:{encoded}}}:*"

    def parse(self, key: str | bytes) -> ParsedKey | None:
        """The session or user (and which of its keys) ``key`` is, or ``None`` for a key this
        schema does not build (another prefix, another layout, a non-canonical id)."""
        if isinstance(key, bytes):
            try:
                key = key.decode("ascii")
            except UnicodeDecodeError:
                return None
        head = f"{self.prefix}:{{"
        if not key.startswith(head):
            return None
        tag, sep, part = key[len(head) :].partition("}:")
        kind_code, colon, encoded = tag.partition(":")
        if not sep or not colon or not encoded:
            return None
        kind: Literal["session", "user"]
        if kind_code == "s" and part in _SESSION_PARTS:
            kind = "session"
        elif kind_code == "u" and part in _USER_PARTS:
            kind = "user"
        else:
            return None
        try:
            decoded = unquote(encoded, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
        if _encode(decoded) != encoded:  # only what _encode produces is one of our keys
            return None
        return ParsedKey(kind, decoded, part)
