"""A parent graph with a subgraph node: shows namespaced subgraph events and state."""

from __future__ import annotations

import operator
from typing import Annotated

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    items: Annotated[list[str], operator.add]


def research(state: State) -> dict:
    get_stream_writer()({"progress": "researching"})
    return {"items": ["researched"]}


def summarise(state: State) -> dict:
    return {"items": ["summarised"]}


sub_builder = StateGraph(State)
sub_builder.add_node("research", research)
sub_builder.add_node("summarise", summarise)
sub_builder.add_edge(START, "research")
sub_builder.add_edge("research", "summarise")
sub_builder.add_edge("summarise", END)


def plan(state: State) -> dict:
    return {"items": ["planned"]}


def finish(state: State) -> dict:
    return {"items": ["finished"]}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("worker", sub_builder.compile())
builder.add_node("finish", finish)
builder.add_edge(START, "plan")
builder.add_edge("plan", "worker")
builder.add_edge("worker", "finish")
builder.add_edge("finish", END)
graph = builder.compile()
