"""A chat agent whose model streams its reply token by token (a fake model: no network)."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def _reply_to(messages: list) -> str:
    last = messages[-1].content if messages else ""
    return f"You said: {last}"


async def respond(state: MessagesState) -> dict:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=_reply_to(state["messages"]))]))
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("respond", respond)
builder.add_edge(START, "respond")
builder.add_edge("respond", END)
graph = builder.compile()
