"""An OpenAI Agents SDK agent whose conversation memory is agentmem.

    pip install 'agentmem-redis[openai-agents]'
    python examples/openai_agents_session.py redis://localhost:6379/0

Two runs of one agent share a session: the second run is a new ``Runner.run`` that is
handed only the new message, and the agent still knows the caller's name, because the
session (``AgentMemorySession``) gave it the first run's items back from Redis.

The model is scripted (no network, no API key): a ``Model`` that answers from the
conversation history the SDK hands it, so the greeting proves what the session stored.
Exits 1 if the memory did not carry over.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, ModelResponse, ModelSettings, Runner, Usage, set_tracing_disabled
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.models.interface import Model
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from agentmem import AgentMemoryStore
from agentmem.integrations.openai_agents import AgentMemorySession

_NAME = re.compile(r"my name is (\w+)", re.IGNORECASE)


def _texts(items: str | list[TResponseInputItem]) -> list[str]:
    """The text of every user message in the model's input, oldest first."""
    if isinstance(items, str):
        return [items]
    texts: list[str] = []
    for item in items:
        content = item.get("content") if item.get("role") == "user" else None
        if isinstance(content, str):
            texts.append(content)
    return texts


class ScriptedModel(Model):
    """Greets by name once the conversation it is given contains the name."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        history: str | list[TResponseInputItem] = args[1] if len(args) > 1 else kwargs["input"]
        names = [match.group(1) for text in _texts(history) if (match := _NAME.search(text))]
        reply = f"Hello again, {names[-1]}!" if names else "Hello! What is your name?"
        if names and _NAME.search(_texts(history)[-1]):
            reply = f"Nice to meet you, {names[-1]}."
        message = ResponseOutputMessage(
            id="msg_scripted",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=reply, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("this example does not stream")


async def converse(url: str, prefix: str) -> int:
    set_tracing_disabled(True)  # no trace export: this example makes no network calls
    agent = Agent(
        name="support", instructions="Be brief.", model=ScriptedModel(), model_settings=ModelSettings()
    )
    async with AgentMemoryStore.from_url(url, prefix=prefix) as store:
        session = AgentMemorySession("call-1", store)
        await session.clear_session()
        first = await Runner.run(agent, "Hi, my name is Ada.", session=session)
        print(f"turn 1: {first.final_output}")
        # A new run with only the new message: the name must come from the session.
        second = await Runner.run(agent, "Can you check my order?", session=session)
        print(f"turn 2: {second.final_output}")
        stored = await session.get_items()
        print(f"{len(stored)} items in agentmem session 'call-1'")
        return 0 if second.final_output == "Hello again, Ada!" else 1


if __name__ == "__main__":
    sys.exit(
        asyncio.run(converse(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "openai-agents-example"))
    )
