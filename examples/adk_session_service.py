"""A Google ADK agent whose sessions, events and state live in agentmem.

    pip install 'agentmem-redis[adk]'
    python examples/adk_session_service.py redis://localhost:6379/0

The agent's reply goes to ``user:last_reply`` (its ``output_key``), a user-scoped state
key: ADK's event carries it as a state delta, and ``AgentMemorySessionService`` stores it
with the event in one script. A second, brand-new session of the same user then starts
with that state, and a second turn in the first session shows its events came back from
Redis.

The model is scripted (no network, no API key): a ``BaseLlm`` that answers from the
conversation ADK hands it. Exits 1 if the memory did not carry over.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.genai import types

from agentmem import AgentMemoryStore
from agentmem.integrations.adk import AgentMemorySessionService

APP = "support"
_NAME = re.compile(r"my name is (\w+)", re.IGNORECASE)


class ScriptedLlm(BaseLlm):
    """Greets by name once the conversation it is given contains the name."""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        texts = [
            part.text
            for content in llm_request.contents
            if content.role == "user"
            for part in content.parts or []
            if part.text
        ]
        names = [match.group(1) for text in texts if (match := _NAME.search(text))]
        reply = f"Hello again, {names[-1]}!" if names else "Hello! What is your name?"
        if names and texts and _NAME.search(texts[-1]):
            reply = f"Nice to meet you, {names[-1]}."
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=reply)]))


async def say(runner: Runner, session_id: str, text: str) -> str:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    reply = ""
    async for event in runner.run_async(user_id="ada", session_id=session_id, new_message=message):
        if event.content and event.content.parts and event.content.parts[0].text:
            reply = event.content.parts[0].text
    return reply


async def converse(url: str, prefix: str) -> int:
    agent = LlmAgent(name="support", model=ScriptedLlm(model="scripted"), output_key="user:last_reply")
    async with AgentMemoryStore.from_url(url, prefix=prefix) as store:
        sessions = AgentMemorySessionService(store)
        runner = Runner(app_name=APP, agent=agent, session_service=sessions)
        first = await sessions.create_session(app_name=APP, user_id="ada", session_id="call-1")
        print("turn 1:", await say(runner, first.id, "Hi, my name is Ada."))
        print("turn 2:", second := await say(runner, first.id, "Can you check my order?"))
        # A new session of the same user starts with the user-scoped state.
        other = await sessions.create_session(app_name=APP, user_id="ada", session_id="call-2")
        print(f"new session sees user:last_reply = {other.state.get('user:last_reply')!r}")
        stored = await sessions.get_session(app_name=APP, user_id="ada", session_id=first.id)
        print(f"{len(stored.events) if stored else 0} events stored for session 'call-1'")
        ok = second == "Hello again, Ada!" and other.state.get("user:last_reply") == second
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(converse(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "adk-example")))
