"""A blocking API for sync code: :class:`SyncAgentMemoryStore`, a thin layer over
:class:`~agentmem.AgentMemoryStore`.

The async store runs on an event loop of its own, in one daemon thread per sync store,
reached through an :class:`anyio.from_thread.BlockingPortal`. Each call hands the
async method to that loop and blocks the calling thread until it is done, so the
semantics (retries, breaker, auto-pipelining, journal) and the errors are the async
store's own: the exception the async store raised is re-raised in the calling thread,
same object, same ``__cause__``. Calls from many threads at once are safe; they meet
on the one loop, where the auto-pipeliner batches them like concurrent tasks.

Rules: a call from a thread that runs an event loop is refused (it would block that
loop: use the async store there); ``close()`` (or leaving the ``with`` block) closes
the async store and stops the loop thread, after which every call raises
:class:`~agentmem.StoreClosedError`. The loop thread is a daemon, so a program that
forgets ``close()`` still exits (without releasing its connections cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from anyio.from_thread import BlockingPortal

from agentmem.breaker import CircuitBreaker
from agentmem.config import StoreConfig
from agentmem.errors import StoreClosedError
from agentmem.factory import open_store, store_class
from agentmem.health import Health
from agentmem.journal import DroppedWrite
from agentmem.journaled import JournaledStore
from agentmem.retry import RetryStats
from agentmem.store import AgentMemoryStore, Turn

if TYPE_CHECKING:
    from agentmem.memories.sync import SyncMemories

__all__ = ["SyncAgentMemoryStore", "SyncJournaledStore"]

T = TypeVar("T")


def _refuse_in_event_loop(operation: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"SyncAgentMemoryStore.{operation}() was called from a running event loop, which it would "
        f"block until Redis answers; in async code use AgentMemoryStore (await store.{operation}(...))"
    )


class _LoopThread:
    """An asyncio event loop on a daemon thread, reached through an anyio portal.

    Not ``anyio.from_thread.start_blocking_portal()``: its thread is not a daemon in
    every anyio 4.x release, and a non-daemon loop thread would keep a program that
    forgot ``close()`` from exiting.
    """

    def __init__(self, name: str) -> None:
        ready: Future[BlockingPortal] = Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend="asyncio")
            except BaseException as exc:  # handed to the thread that waits in __init__
                if not ready.done():
                    ready.set_exception(exc)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        self.portal = ready.result()

    def stop(self) -> None:
        """Let running calls finish, then end the loop and its thread."""
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop)
        self._thread.join()


class SyncAgentMemoryStore:
    """The blocking face of :class:`~agentmem.AgentMemoryStore`: the same calls, options,
    errors and semantics, without ``await``.

    Made by :meth:`from_url` or :meth:`from_sentinel` (the async store's options); use it
    as a context manager or call :meth:`close`. One store may be shared by any number of
    threads. ``fallback="journal"`` gives a :class:`SyncJournaledStore`.
    """

    def __init__(self, store: AgentMemoryStore, loop: _LoopThread) -> None:
        """Wraps ``store``, which lives on ``loop``: use :meth:`from_url`/:meth:`from_sentinel`."""
        self._store = store
        self._loop = loop
        self._closed = False
        self._close_lock = threading.Lock()

    # -- construction ------------------------------------------------------------------

    @staticmethod
    def _start(make: Callable[[], AgentMemoryStore]) -> tuple[AgentMemoryStore, _LoopThread]:
        """Start a loop thread and build the async store on it (its pool belongs to that loop)."""
        _refuse_in_event_loop("from_url")
        loop = _LoopThread("agentmem-sync")
        try:
            return loop.portal.call(make), loop
        except BaseException:
            loop.stop()
            raise

    @classmethod
    def _wrap(cls, store: AgentMemoryStore, loop: _LoopThread) -> SyncAgentMemoryStore:
        if isinstance(store, JournaledStore):
            return SyncJournaledStore(store, loop)
        return SyncAgentMemoryStore(store, loop)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncAgentMemoryStore:
        """``agentmem.open_store(url, **options)``, blocking (``fallback="journal"`` gives a
        :class:`SyncJournaledStore`); see ``AgentMemoryStore.from_url`` for the options."""
        return cls._wrap(*cls._start(lambda: open_store(url, **options)))

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> SyncAgentMemoryStore:
        """``AgentMemoryStore.from_sentinel(...)`` (``JournaledStore``'s with
        ``fallback="journal"``), blocking."""
        store_cls = store_class(options.get("fallback", "raise"))
        made = cls._start(
            lambda: store_cls.from_sentinel(
                sentinels, service_name, sentinel_kwargs=sentinel_kwargs, **options
            )
        )
        return cls._wrap(*made)

    # -- the bridge --------------------------------------------------------------------

    def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` on the store's loop; block until done; re-raise its error as is."""
        _refuse_in_event_loop(operation)
        if self._closed:
            raise StoreClosedError(f"{operation}: the store was closed by close(); nothing was sent")
        try:
            return self._loop.portal.call(call)
        except RuntimeError as exc:
            if self._closed:  # close() stopped the portal between the check and the call
                raise StoreClosedError(
                    f"{operation}: the store was closed by close(); nothing was sent"
                ) from exc
            raise

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def config(self) -> StoreConfig:
        """The store's options (frozen)."""
        return self._store.config

    @property
    def retry_stats(self) -> RetryStats:
        """Attempts, retries and failures counted since the store was made."""
        return self._store.retry_stats

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker, to read (``.state``, ``.consecutive_failures``); it lives on the
        store's loop thread, so do not await its methods from elsewhere."""
        return self._store.breaker

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the async store (releasing its connections; a journaled store writes its
        journal back first), then stop the loop thread. Calls in flight on other threads
        finish first. Closing twice does nothing."""
        _refuse_in_event_loop("close")
        with self._close_lock:
            if self._closed:
                return
            try:
                self._loop.portal.call(self._store.aclose)
            finally:
                self._closed = True
                self._loop.stop()

    def __enter__(self) -> SyncAgentMemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the store's calls ---------------------------------------------------------------

    def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        """Replace the session's context with ``context`` and reset the session TTL."""
        self._run("save_context", lambda: self._store.save_context(session_id, context))

    def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set the given top-level fields, keeping the others; creates the context if missing."""
        self._run("update_context", lambda: self._store.update_context(session_id, fields))

    def load_context(self, session_id: str) -> dict[str, Any] | None:
        """The session's context, or ``None`` if it has none (never for broken data)."""
        return self._run("load_context", lambda: self._store.load_context(session_id))

    def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Append messages, keep the newest ``max_history``, reset the TTL; the new length."""
        return self._run("append_messages", lambda: self._store.append_messages(session_id, messages))

    def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages, oldest first (``[]`` when there are none)."""
        return self._run("load_history", lambda: self._store.load_history(session_id, last=last))

    def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        """Merge ``facts`` into the user's long-term facts."""
        self._run("remember", lambda: self._store.remember(user_id, facts))

    def recall(self, user_id: str) -> dict[str, Any]:
        """The user's long-term facts (``{}`` when there are none)."""
        return self._run("recall", lambda: self._store.recall(user_id))

    def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        """Context, the last ``last`` messages and the user's facts, in one round trip."""
        return self._run("load_turn", lambda: self._store.load_turn(session_id, user_id=user_id, last=last))

    def delete_session(self, session_id: str) -> bool:
        """Delete the session's context and history; ``True`` if anything was there."""
        return self._run("delete_session", lambda: self._store.delete_session(session_id))

    def forget_user(self, user_id: str) -> bool:
        """Erase the user's long-term facts and memories; ``True`` if there were any."""
        return self._run("forget_user", lambda: self._store.forget_user(user_id))

    @functools.cached_property
    def memories(self) -> SyncMemories:
        """``store.memories`` (recall by meaning), blocking: add, search, get, delete, list."""
        from agentmem.memories.sync import SyncMemories

        return SyncMemories(self._run, self._store.memories)

    def health(self) -> Health:
        """Server version, latency, pool use, breaker state and key counters."""
        return self._run("health", self._store.health)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        inner = type(self._store).__name__
        return f"<{type(self).__name__} {state} over {inner} prefix={self.config.prefix!r}>"


class SyncJournaledStore(SyncAgentMemoryStore):
    """The blocking face of :class:`~agentmem.JournaledStore` (``fallback="journal"``), with
    its :attr:`journal_backlog`, :attr:`journal_dropped` and :meth:`flush_journal`.

    ``close()`` raises :class:`~agentmem.UnflushedJournalError` as ``aclose()`` does; the
    loop thread is stopped all the same.
    """

    def __init__(self, store: JournaledStore, loop: _LoopThread) -> None:
        super().__init__(store, loop)
        self._journaled = store

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyncJournaledStore:
        """``JournaledStore.from_url(url, **options)``, blocking; typed as this class."""
        return SyncJournaledStore(*cls._start_journaled(lambda: JournaledStore.from_url(url, **options)))

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> SyncJournaledStore:
        """``JournaledStore.from_sentinel(...)``, blocking; typed as this class."""
        return SyncJournaledStore(
            *cls._start_journaled(
                lambda: JournaledStore.from_sentinel(
                    sentinels, service_name, sentinel_kwargs=sentinel_kwargs, **options
                )
            )
        )

    @classmethod
    def _start_journaled(cls, make: Callable[[], JournaledStore]) -> tuple[JournaledStore, _LoopThread]:
        store, loop = cls._start(make)
        return cast(JournaledStore, store), loop

    @property
    def journal_backlog(self) -> int:
        """Writes kept locally that Redis has not received yet."""
        return self._journaled.journal_backlog

    @property
    def journal_dropped(self) -> list[DroppedWrite]:
        """Journaled writes Redis refused on replay; remove what you have handled."""
        return self._journaled.journal_dropped

    def flush_journal(self) -> list[tuple[str, str]]:
        """Replay the journal now; ``(kind, id)`` of every write still pending."""
        return self._run("flush_journal", self._journaled.flush_journal)
