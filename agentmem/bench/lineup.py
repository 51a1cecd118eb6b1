"""The contenders of the side-by-side tables, in report order."""

from __future__ import annotations

from agentmem.bench.contenders import AgentMem, Contender
from agentmem.bench.handwritten import PipelinedBlob, PipelinedHash, RawBlob, RawHash, SyncJson

__all__ = ["standard_contenders"]


def standard_contenders() -> list[Contender]:
    """Every contender of the side-by-side tables, in report order."""
    return [
        AgentMem("agentmem", auto_pipeline=True),
        AgentMem("agentmem-nopipe", auto_pipeline=False),
        RawBlob("raw-blob"),
        RawHash("raw-hash"),
        PipelinedBlob("pipe-blob"),
        PipelinedHash("pipe-hash"),
        SyncJson("sync-json"),
    ]
