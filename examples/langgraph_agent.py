"""A minimal LangGraph chat agent whose memory is agentmem: the thread's checkpoints in
``AgentMemorySaver``, what it learns about the user in ``LangGraphStore``.

    pip install 'agentmem-redis[langgraph]'
    python examples/langgraph_agent.py redis://localhost:6379/0

The model is LangChain's ``GenericFakeChatModel`` answering from a script, so the
example needs no network and no API key. A second "process" (a new store and saver on
the same Redis) resumes the conversation where the first left it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agentmem import AgentMemoryStore
from agentmem.integrations.langgraph import AgentMemorySaver, LangGraphStore

SCRIPT = [
    AIMessage("Nice to meet you, Ada."),
    AIMessage("You told me your name is Ada."),
]


def build_graph(store: AgentMemoryStore, model: GenericFakeChatModel) -> CompiledStateGraph:  # type: ignore[type-arg]
    # The store comes in through the runtime (not get_store()): on Python 3.10 an async
    # node cannot read LangGraph's context variables.
    async def chat(state: MessagesState, runtime: Runtime[None]) -> dict[str, list[AIMessage]]:
        memory = runtime.store
        assert memory is not None
        last = state["messages"][-1]
        if isinstance(last.content, str) and "my name is" in last.content:
            await memory.aput(("users", "ada"), "profile", {"name": last.content.rsplit(" ", 1)[-1]})
        reply = await model.ainvoke(state["messages"])
        return {"messages": [AIMessage(str(reply.content))]}

    graph = StateGraph(MessagesState)
    graph.add_node("chat", chat)
    graph.add_edge(START, "chat")
    agent = graph.compile(
        checkpointer=AgentMemorySaver(store),
        store=LangGraphStore(store, ttl={"default_ttl": 60 * 24, "refresh_on_read": True}),
    )
    return agent


async def run(url: str, prefix: str) -> int:
    model = GenericFakeChatModel(messages=iter(SCRIPT))
    thread: RunnableConfig = {"configurable": {"thread_id": "ada-1"}}
    async with AgentMemoryStore.from_url(url, prefix=prefix) as store:
        agent = build_graph(store, model)
        first = await agent.ainvoke({"messages": [HumanMessage("Hi, my name is Ada")]}, thread)
        print("agent:", first["messages"][-1].content)
    # Another process, later: new connections, same Redis, same thread id.
    async with AgentMemoryStore.from_url(url, prefix=prefix) as store:
        agent = build_graph(store, model)
        second = await agent.ainvoke({"messages": [HumanMessage("What is my name?")]}, thread)
        print("agent:", second["messages"][-1].content)
        history = [message.content for message in second["messages"]]
        profile = await LangGraphStore(store).aget(("users", "ada"), "profile")
    print(f"{len(history)} messages in the thread; profile: {profile.value if profile else None}")
    ok = len(history) == 4 and profile is not None and profile.value == {"name": "Ada"}
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else "redis://localhost:6379/0"
    prefix = args[1] if len(args) > 1 else "langgraph-agent"
    return asyncio.run(run(url, prefix))


if __name__ == "__main__":
    raise SystemExit(main())
