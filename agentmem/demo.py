"""`agentmem demo`: a scripted two-turn customer-service conversation through the store.

Turn 1 learns the caller's phone number, name and intent; turn 2 starts from
``load_turn`` alone and greets the caller by name. If the memory did not carry
over, the demo fails (exit 1) instead of printing a happy transcript.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from agentmem.store import AgentMemoryStore

__all__ = ["DemoFailed", "run_conversation"]

Say = Callable[[str], None]

TURN_1 = "Hi, I'd like to return an order. My number is 13800138000 and my name is Li Wei."
TURN_2 = "Yes, it's the blue kettle from last week."


class DemoFailed(RuntimeError):
    """The second turn did not find what the first one stored."""


def _learn(utterance: str) -> dict[str, Any]:
    """A stand-in for the language model: pull slots out of what the caller said."""
    facts: dict[str, Any] = {}
    if phone := re.search(r"\b1\d{10}\b", utterance):
        facts["phone"] = phone.group()
    if name := re.search(r"my name is ([A-Z][a-z]+(?: [A-Z][a-z]+)*)", utterance):
        facts["name"] = name.group(1)
    if "return" in utterance:
        facts["intent"] = "return_order"
    return facts


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


async def run_conversation(
    store: AgentMemoryStore,
    say: Say,
    *,
    between_turns: Callable[[], Any] | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Run both turns; return the session's final context. ``between_turns`` may inject a fault."""
    session = session_id or f"call-{uuid.uuid4().hex[:8]}"
    user = "caller-13800138000"

    say(f"--- turn 1 (session {session}) ---")
    say(f"caller: {TURN_1}")
    turn = await store.load_turn(session, user_id=user)
    learned = _learn(TURN_1)
    await store.update_context(session, learned)
    await store.remember(user, {"preferred_name": learned["name"]})
    reply = "How may I help with the return? I have noted your number."
    await store.append_messages(
        session, [{"role": "user", "content": TURN_1}, {"role": "assistant", "content": reply}]
    )
    say(f"agent:  {reply}")
    say(f"        (stored context {sorted(learned)} and the caller's preferred name)")

    if between_turns is not None:
        await between_turns()

    say("--- turn 2 ---")
    say(f"caller: {TURN_2}")
    turn = await store.load_turn(session, user_id=user, last=20)
    context = turn.context or {}
    name = turn.profile.get("preferred_name") or context.get("name")
    if not name or context.get("phone") != learned["phone"]:
        raise DemoFailed(f"turn 2 lost the memory of turn 1: context={context!r} profile={turn.profile!r}")
    reply = (
        f"Thanks, {name}. I'll start the return of the blue kettle and text the label to {context['phone']}."
    )
    await store.update_context(session, {"item": "blue kettle", "status": "return_started"})
    await store.append_messages(
        session, [{"role": "user", "content": TURN_2}, {"role": "assistant", "content": reply}]
    )
    say(f"agent:  {reply}")

    final = await store.load_turn(session, user_id=user, last=20)
    say("--- what the memory holds ---")
    say(f"context: {_pretty(final.context)}")
    say(f"history: {len(final.history)} messages, last: {final.history[-1]['content']!r}")
    say(f"facts of {user}: {_pretty(final.profile)}")
    await store.delete_session(session)
    await store.forget_user(user)
    return final.context or {}
