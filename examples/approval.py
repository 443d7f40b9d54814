"""Human in the loop: the graph stops at interrupt() until a reviewer answers.

Resume with ``command={"resume": "yes"}`` (or anything else to reject).
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    request: str
    approved: bool
    result: str


def ask(state: State) -> dict:
    answer = interrupt({"question": f"Approve {state.get('request', 'this request')}?"})
    return {"approved": str(answer).strip().lower() in {"yes", "y", "true", "approve"}}


def act(state: State) -> dict:
    verdict = "done" if state.get("approved") else "rejected"
    return {"result": f"{state.get('request', '')}: {verdict}"}


builder = StateGraph(State)
builder.add_node("ask", ask)
builder.add_node("act", act)
builder.add_edge(START, "ask")
builder.add_edge("ask", "act")
builder.add_edge("act", END)
graph = builder.compile()
