"""LangGraph search filters, and the tags that let the search index answer them.

A filter is LangGraph's: ``{"field": value}`` (equality; a nested dict matches field by
field, a list element by element) or ``{"field": {"$op": operand}}`` with ``$eq $ne $gt
$gte $lt $lte``. :func:`matches` decides one item in Python (the search without a query);
:func:`filter_query` turns the same filter into a RediSearch query over the tags that
:func:`value_tags` derives from an item's value, so a ranked search filters inside the
query and never drops hits after it. Both follow one set of rules (JSON's, not Python's):

- equality is JSON equality: ``1 == 1.0``, but ``true`` is not ``1``;
- a missing field equals ``None`` (``{"f": None}`` matches an item without ``f``);
- ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers (float64); a value that is not a
  number (a string, a bool, a missing field) never matches, and an operand that is not a
  number is refused with :class:`~agentmem.InvalidArgumentError`.

Each tag is a hash (20 hex digits) of what it says, so any field name or value fits in a
TAG field without escaping: ``w`` (the node at this path has this exact JSON value),
``d`` (a dict is here), ``l`` (a list of this length is here), ``p`` (something is here),
``n`` (one hex-digit prefix of an order-preserving encoding of a number here: a range is
the union of at most 15 prefixes per digit), ``s`` (the item's namespace starts with
these labels).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from agentmem.errors import InvalidArgumentError

__all__ = ["FIELD", "check_filter", "filter_query", "matches", "namespace_tags", "prefix_query", "value_tags"]

_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_RANGES = frozenset({"$gt", "$gte", "$lt", "$lte"})
_HEX = "0123456789abcdef"
_Path = tuple[str | int, ...]


# -- one rule set for values ---------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _canonical(value: Any) -> Any:
    """``value`` with integral floats as ints (JSON equality: 1 == 1.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise InvalidArgumentError(f"a filter value must be JSON, got {value!r}: {exc}") from exc


def _same(value: Any, wanted: Any) -> bool:
    if value is None or wanted is None:
        return value is None and wanted is None
    return _json(value) == _json(wanted)


def _number(operand: Any, operator: str) -> float:
    if not _is_number(operand) or not math.isfinite(operand):
        raise InvalidArgumentError(f"filter operator {operator} compares numbers, got {operand!r}")
    return float(operand)


def _check_operator(operator: Any) -> str:
    if operator not in _OPERATORS:
        raise InvalidArgumentError(
            f"unsupported filter operator {operator!r} (supported: {', '.join(sorted(_OPERATORS))})"
        )
    return str(operator)


def _operators(wanted: Any) -> bool:
    return isinstance(wanted, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in wanted)


def _compare(value: Any, operator: str, operand: Any) -> bool:
    operator = _check_operator(operator)
    if operator == "$eq":
        return _same(value, operand)
    if operator == "$ne":
        return not _same(value, operand)
    bound = _number(operand, operator)
    if not _is_number(value):
        return False
    number = float(value)
    if operator == "$gt":
        return number > bound
    if operator == "$gte":
        return number >= bound
    if operator == "$lt":
        return number < bound
    return number <= bound


def _match(value: Any, wanted: Any) -> bool:
    if _operators(wanted):
        return all(_compare(value, op, operand) for op, operand in wanted.items())
    if isinstance(wanted, Mapping):
        return isinstance(value, Mapping) and all(_match(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(wanted)
            and all(_match(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return _same(value, wanted)


def _check_top(filter: Any) -> None:
    if not isinstance(filter, Mapping):
        raise InvalidArgumentError(f"a filter must be a dict, not {type(filter).__name__}")
    if _operators(filter):
        raise InvalidArgumentError(f"a filter's top level names fields, not operators: {filter!r}")


def matches(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """Whether an item's value passes ``filter`` (see the module docstring)."""
    _check_top(filter)
    return _match(value, filter)


def check_filter(filter: Mapping[str, Any] | None) -> None:
    """Raise :class:`InvalidArgumentError` for an operator or operand the rules refuse."""
    if filter:
        filter_query(filter)


# -- tags --------------------------------------------------------------------------


def _tag(kind: str, path: _Path, payload: bytes = b"") -> str:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(kind.encode())
    digest.update(orjson.dumps(list(path)))
    digest.update(b"\0")
    digest.update(payload)
    return digest.hexdigest()


def _ordered(number: float) -> str:
    """16 hex digits whose string order is the numbers' order (IEEE 754, sign folded)."""
    number = float(number) + 0.0  # -0.0 -> 0.0
    (bits,) = struct.unpack(">Q", struct.pack(">d", number))
    bits = (~bits & 0xFFFF_FFFF_FFFF_FFFF) if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _walk(value: Any, path: _Path) -> Iterator[str]:
    yield _tag("p", path)
    yield _tag("w", path, _json(value))
    if isinstance(value, Mapping):
        yield _tag("d", path)
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        yield _tag("l", path, str(len(value)).encode())
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))
    elif _is_number(value):
        digits = _ordered(value)
        for length in range(1, len(digits) + 1):
            yield _tag("n", path, digits[:length].encode())


def value_tags(value: Mapping[str, Any]) -> list[str]:
    """The tags of every node of an item's value (the value's own root excluded)."""
    tags: set[str] = set()
    for key, item in value.items():
        tags.update(_walk(item, (str(key),)))
    return sorted(tags)


def namespace_tags(namespace: Sequence[str]) -> list[str]:
    """One tag per prefix of the namespace (the empty one excluded)."""
    return [_tag("s", tuple(namespace[:depth])) for depth in range(1, len(namespace) + 1)]


# -- queries -----------------------------------------------------------------------

FIELD = "f"


#: A tag no item has: the clause of a range nothing can be in.
_NOTHING = _tag("none", ())


def _any(tags: Sequence[str]) -> str:
    return f"@{FIELD}:{{{' | '.join(tags or [_NOTHING])}}}"


def _range(path: _Path, operator: str, operand: Any) -> str:
    digits = _ordered(_number(operand, operator))
    above = operator in ("$gt", "$gte")
    cover: list[str] = []
    for length in range(len(digits), 0, -1):
        head, digit = digits[: length - 1], _HEX.index(digits[length - 1])
        others = _HEX[digit + 1 :] if above else _HEX[:digit]
        cover.extend(_tag("n", path, (head + other).encode()) for other in others)
    if operator in ("$gte", "$lte"):
        cover.append(_tag("n", path, digits.encode()))
    return _any(cover)


def _equal(path: _Path, wanted: Any) -> str:
    if wanted is None:  # an explicit null, or nothing at all
        return f"({_any([_tag('w', path, b'null')])} | -{_any([_tag('p', path)])})"
    return _any([_tag("w", path, _json(wanted))])


def _clause(path: _Path, operator: str, operand: Any) -> str:
    operator = _check_operator(operator)
    if operator == "$eq":
        return _equal(path, operand)
    if operator == "$ne":
        return f"-({_equal(path, operand)})"
    return _range(path, operator, operand)


def _compile(path: _Path, wanted: Any) -> list[str]:
    if _operators(wanted):
        return [_clause(path, op, operand) for op, operand in wanted.items()]
    if isinstance(wanted, Mapping):
        parts = [_any([_tag("d", path)])] if path else []
        for key, sub in wanted.items():
            parts.extend(_compile((*path, str(key)), sub))
        return parts
    if isinstance(wanted, (list, tuple)):
        parts = [_any([_tag("l", path, str(len(wanted)).encode())])]
        for index, sub in enumerate(wanted):
            parts.extend(_compile((*path, index), sub))
        return parts
    return [_equal(path, wanted)]


def filter_query(filter: Mapping[str, Any]) -> list[str]:
    """The clauses (to AND) of a RediSearch query that holds exactly the items ``filter``
    passes; raises :class:`InvalidArgumentError` for what the rules refuse."""
    _check_top(filter)
    return _compile((), filter)


def prefix_query(namespace_prefix: Sequence[str]) -> list[str]:
    """The clause for "the namespace starts with these labels" (none for the empty prefix)."""
    if not namespace_prefix:
        return []
    return [_any([_tag("s", tuple(namespace_prefix))])]
