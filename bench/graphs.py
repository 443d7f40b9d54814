"""Trivial, LLM-free LangGraph graphs used as performance anchors.

Registered in ``langgraph.json`` beside this file under the names the
benchmark (``bench_agent_server.py``) expects:

* ``echo``            one node; appends ``"echo:<last item>"`` to ``items``.
* ``chain10``         ten sequential nodes ``n0``..``n9``; each appends its name.
* ``interrupt_once``  one node that calls ``interrupt()`` once, then appends
                      ``"answer:<resume value>"`` when resumed with
                      ``Command(resume=...)``.

State for all three is ``{"items": list[str]}`` with an append reducer, so a
caller can check the exact output of every run:

    echo            input {"items": ["t"]}  -> items == [..., "t", "echo:t"]
    chain10         input {"items": ["t"]}  -> items == [..., "t", "n0", ..., "n9"]
    interrupt_once  input {"items": ["t"]}  -> interrupted with {"question": "t"}
                    resume "r"              -> items == [..., "t", "answer:r"]

Only ``langgraph`` is needed; no network, no model.
"""

from __future__ import annotations

import operator
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    items: Annotated[list[str], operator.add]


# --------------------------------------------------------------------- echo
def _echo(state: State) -> dict:
    items = state.get("items") or []
    last = items[-1] if items else ""
    return {"items": [f"echo:{last}"]}


def build_echo() -> StateGraph:
    b = StateGraph(State)
    b.add_node("echo", _echo)
    b.add_edge(START, "echo")
    b.add_edge("echo", END)
    return b


# ------------------------------------------------------------------ chain10
CHAIN_LEN = 10


def _make_step(name: str):
    def step(state: State) -> dict:
        return {"items": [name]}

    step.__name__ = f"step_{name}"
    return step


def build_chain(n: int = CHAIN_LEN) -> StateGraph:
    b = StateGraph(State)
    prev = START
    for i in range(n):
        name = f"n{i}"
        b.add_node(name, _make_step(name))
        b.add_edge(prev, name)
        prev = name
    b.add_edge(prev, END)
    return b


# ----------------------------------------------------------- interrupt_once
def _ask(state: State) -> dict:
    items = state.get("items") or []
    question = items[-1] if items else ""
    answer = interrupt({"question": question})
    return {"items": [f"answer:{answer}"]}


def build_interrupt_once() -> StateGraph:
    b = StateGraph(State)
    b.add_node("ask", _ask)
    b.add_edge(START, "ask")
    b.add_edge("ask", END)
    return b


# Compiled graphs, exported for langgraph.json ("./graphs.py:echo" etc.).
# The server injects its own checkpointer/store; do not pass one here.
echo = build_echo().compile()
chain10 = build_chain().compile()
interrupt_once = build_interrupt_once().compile()

BUILDERS = {
    "echo": build_echo,
    "chain10": build_chain,
    "interrupt_once": build_interrupt_once,
}
