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
from urllib.parse import quote

from agentmem.errors import InvalidKeyError

__all__ = ["MAX_ID_BYTES", "KeySchema", "SessionKeys", "escape_glob", "validate_id"]

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


def escape_glob(text: str) -> str:
    """Escape ``text`` so a SCAN/KEYS ``MATCH`` pattern matches it literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The keys of one session, in the order the Lua scripts expect them.

    ``deleted`` is the tombstone ``delete_session`` leaves: the delete's version, so a
    replayed journal write older than the delete is dropped. It is last on purpose:
    scripts find a target's tombstone at ``KEYS[#KEYS]``.
    """

    context: str
    history: str
    appends: str
    deleted: str

    def all(self) -> tuple[str, str, str, str]:
        return (self.context, self.history, self.appends, self.deleted)


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds every key of a store from its prefix."""

    prefix: str

    def session(self, session_id: str) -> SessionKeys:
        tag = f"{self.prefix}:{{s:{_encode(validate_id(session_id, kind='session'))}}}"
        return SessionKeys(
            context=f"{tag}:ctx",
            history=f"{tag}:hist",
            appends=f"{tag}:appends",
            deleted=f"{tag}:deleted",
        )

    def profile(self, user_id: str) -> str:
        return f"{self._user_tag(user_id)}:facts"

    def profile_keys(self, user_id: str) -> tuple[str, str]:
        """The user's facts and the tombstone ``forget_user`` leaves (last, as for a session)."""
        tag = self._user_tag(user_id)
        return (f"{tag}:facts", f"{tag}:forgotten")

    def _user_tag(self, user_id: str) -> str:
        return f"{self.prefix}:{{u:{_encode(validate_id(user_id, kind='user'))}}}"

    def match_all(self) -> str:
        """A SCAN MATCH pattern for every key of this store and nothing else."""
        return f"{escape_glob(self.prefix)}:{{*"
