"""A sync agent served from a thread pool, the way a Flask/Django view or a worker
thread would use agentmem: one ``SyncAgentMemoryStore`` for the whole process, shared
by every request thread, closed at shutdown.

    python examples/threadpool_agent.py redis://localhost:6379/0

``handle_message`` is the view: it loads the turn, "answers", and writes what it
learned. Nothing here is async; the store runs its own event loop in one thread.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from agentmem import MemoryUnavailableError, SyncAgentMemoryStore

#: How many request threads serve the agent at once (a WSGI server's thread count).
REQUEST_THREADS = 8

_NAME = re.compile(r"my name is (\w+)", re.IGNORECASE)


def handle_message(store: SyncAgentMemoryStore, call_id: str, user_id: str, text: str) -> str:
    """One request: what a ``@app.post("/calls/<call_id>/messages")`` view would do."""
    try:
        turn = store.load_turn(call_id, user_id=user_id, last=10)
    except MemoryUnavailableError:
        return "Sorry, I can't reach my memory right now; please try again in a moment."  # a 503
    name = (turn.context or {}).get("name") or turn.profile.get("preferred_name")
    found = _NAME.search(text)
    if found:
        name = found.group(1)
        store.update_context(call_id, {"name": name})
        store.remember(user_id, {"preferred_name": name})
    reply = f"Hello {name}, how can I help?" if name else "Hello! May I have your name?"
    exchange = [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
    store.append_messages(call_id, exchange)
    return reply


def serve(store: SyncAgentMemoryStore, calls: int) -> list[str]:
    """Two requests per call, all calls at once on the thread pool; the second replies."""
    with ThreadPoolExecutor(max_workers=REQUEST_THREADS) as pool:
        first = [
            pool.submit(handle_message, store, f"call-{n}", f"user-{n}", f"hi, my name is Caller{n}")
            for n in range(calls)
        ]
        for future in first:
            future.result()  # a typed error would surface here
        second = [
            pool.submit(handle_message, store, f"call-{n}", f"user-{n}", "where is my order?")
            for n in range(calls)
        ]
        return [future.result() for future in second]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else "redis://localhost:6379/0"
    prefix = args[1] if len(args) > 1 else "threadpool-agent"
    with SyncAgentMemoryStore.from_url(url, prefix=prefix) as store:
        replies = serve(store, calls=32)
    for reply in replies[:3]:
        print(reply)
    remembered = sum(reply.startswith("Hello Caller") for reply in replies)
    print(f"{remembered}/{len(replies)} callers greeted by name on their second request")
    return 0 if remembered == len(replies) else 1


if __name__ == "__main__":
    raise SystemExit(main())
