"""What a store operation sends: :class:`Call` objects, each one atomic server command.

Every store operation is a short list of calls (one script run, or two for
``load_turn``); every transport (a single server's pipeliner, a cluster's slot router)
takes such a list and returns one reply per call, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentmem.scripts import Script, ScriptRunner

__all__ = ["Call", "Observation", "raise_first_error"]


@dataclass(frozen=True, slots=True)
class Call:
    """One atomic server command: a script run (``script`` set) or a plain command.

    ``route``: for a call without keys (``FT.SEARCH``, ``SCAN``...), a key whose slot picks
    the node it goes to on a Redis Cluster (any key with the right hash tag); a single
    server ignores it. A keyless call without a route goes to the node of slot 0.
    """

    script: Script | None
    keys: Sequence[str]
    args: Sequence[Any] = ()
    command: str = "EVALSHA"
    route: str | None = None

    def wire_args(self, runner: ScriptRunner) -> tuple[Any, ...]:
        if self.script is None:
            return (self.command, *self.keys, *self.args)
        return ("EVALSHA", runner.sha(self.script), len(self.keys), *self.keys, *self.args)


def raise_first_error(replies: list[Any]) -> list[Any]:
    """An operation's replies, or its first error reply raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class Observation(Protocol):
    """The scope of one observed operation (``StoreEngine.observe``)."""

    def annotate(self, **attributes: Any) -> None:
        """Attributes for the operation's span (``agentmem.journaled=True``...)."""
