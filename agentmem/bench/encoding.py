"""In-process encoding cost: stdlib ``json`` vs ``orjson`` on the benchmark context.

No server is involved: this is the CPU each save and load spends before and after the
network, per context. ``agentmem codec`` is the store's own per-field orjson encoding
(one JSON document per top-level key, as a context is stored in its hash).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agentmem.bench.harness import rate_in_process
from agentmem.bench.workload import CONTEXT
from agentmem.codec import BASE_FIELD, META_FIELD, decode_fields, encode_context, encode_fields

__all__ = ["CODECS", "Codec", "encoding_benchmark"]

_JSON_BLOB = json.dumps(CONTEXT).encode()
_ORJSON_BLOB = orjson.dumps(CONTEXT)
_FIELDS = encode_fields(CONTEXT, limit=1 << 30, what="context")
_BASE = encode_context(CONTEXT, limit=1 << 30, what="context")
#: What load_context reads after a save_context: the version and the base object.
_SAVED = [META_FIELD, b"1733400000000000", BASE_FIELD, _BASE]


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    encode: Callable[[], object]
    decode: Callable[[], object]
    #: Bytes the encoded context takes (for the per-field codec: field names and values).
    size: int


CODECS: tuple[Codec, ...] = (
    Codec(
        "json (stdlib, one blob)",
        lambda: json.dumps(CONTEXT).encode(),
        lambda: json.loads(_JSON_BLOB),
        len(_JSON_BLOB),
    ),
    Codec(
        "orjson (one blob)",
        lambda: orjson.dumps(CONTEXT),
        lambda: orjson.loads(_ORJSON_BLOB),
        len(_ORJSON_BLOB),
    ),
    Codec(
        "agentmem save/load (one base object)",
        lambda: encode_context(CONTEXT, limit=1 << 30, what="context"),
        lambda: decode_fields(_SAVED, what="context"),
        len(_BASE),
    ),
    Codec(
        "agentmem update/remember (per field)",
        lambda: encode_fields(CONTEXT, limit=1 << 30, what="context"),
        lambda: decode_fields(_FIELDS, what="context"),
        sum(map(len, _FIELDS)),
    ),
)


def encoding_benchmark(seconds: float, repeat: int) -> list[dict[str, Any]]:
    """Median encodes and decodes per second of each codec, interleaved over ``repeat`` rounds."""
    encodes: dict[str, list[float]] = {codec.name: [] for codec in CODECS}
    decodes: dict[str, list[float]] = {codec.name: [] for codec in CODECS}
    for codec in CODECS:  # warm-up: first-call costs are not the codec's
        rate_in_process(codec.encode, seconds / 5)
        rate_in_process(codec.decode, seconds / 5)
    for _ in range(repeat):
        for codec in CODECS:
            encodes[codec.name].append(rate_in_process(codec.encode, seconds))
            decodes[codec.name].append(rate_in_process(codec.decode, seconds))
    return [
        {
            "codec": codec.name,
            "encode_per_s": round(statistics.median(encodes[codec.name]), 1),
            "decode_per_s": round(statistics.median(decodes[codec.name]), 1),
            "encoded_bytes": codec.size,
        }
        for codec in CODECS
    ]
