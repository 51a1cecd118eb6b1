"""A binary frame of byte strings: how one stored record keeps its parts apart.

Each part is a 4-byte big-endian length and the bytes. A frame that does not parse
exactly (a truncated value, a value some other writer put there) is corruption.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from agentmem.errors import MemoryCorruptedError

__all__ = ["pack", "unpack"]

_LENGTH = struct.Struct(">I")


def pack(parts: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def unpack(frame: object, count: int, *, what: str) -> list[bytes]:
    """The ``count`` parts of ``frame``, or :class:`MemoryCorruptedError` naming ``what``."""
    if not isinstance(frame, bytes):
        raise MemoryCorruptedError(f"{what} is not a byte string: {type(frame).__name__}")
    parts: list[bytes] = []
    offset = 0
    while offset < len(frame):
        if offset + _LENGTH.size > len(frame):
            break
        (length,) = _LENGTH.unpack_from(frame, offset)
        offset += _LENGTH.size
        if offset + length > len(frame):
            break
        parts.append(frame[offset : offset + length])
        offset += length
    if offset != len(frame) or len(parts) != count:
        raise MemoryCorruptedError(f"{what} is corrupted: not a frame of {count} parts ({len(frame)} bytes)")
    return parts
