"""Graphs the test suite runs. No network, no model.

State is ``{"items": list[str]}`` with an append reducer, so each test can check exact output.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import time
from typing import Annotated

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, interrupt
from typing_extensions import TypedDict

from examples import approval


class State(TypedDict, total=False):
    items: Annotated[list[str], operator.add]


def _chain(names: list[str], node_factory) -> StateGraph:
    builder = StateGraph(State)
    previous = START
    for name in names:
        builder.add_node(name, node_factory(name))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


def _echo(state: State) -> dict:
    items = state.get("items") or []
    return {"items": [f"echo:{items[-1] if items else ''}"]}


echo = StateGraph(State).add_node("echo", _echo).add_edge(START, "echo").add_edge("echo", END).compile()


def _append(name: str):
    def step(state: State) -> dict:
        return {"items": [name]}

    return step


chain10 = _chain([f"n{i}" for i in range(10)], _append).compile()


def _ask(state: State) -> dict:
    items = state.get("items") or []
    answer = interrupt({"question": items[-1] if items else ""})
    return {"items": [f"answer:{answer}"]}


interrupt_once = StateGraph(State).add_node("ask", _ask).add_edge(START, "ask").add_edge("ask", END).compile()


async def _leave_task(state: State) -> dict:
    """Starts a task it never awaits, which writes how it ended to the file named by the input."""
    marker = state["items"][0]

    async def later() -> None:
        outcome = "outlived its run"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            with open(marker, "w") as file:
                file.write(outcome)

    asyncio.get_running_loop().create_task(later())
    return {"items": ["left"]}


leaves_task = StateGraph(State).add_node("leave", _leave_task).add_edge(START, "leave").add_edge("leave", END).compile()


def _fail(state: State) -> dict:
    raise ValueError("this graph always fails")


fail = StateGraph(State).add_node("boom", _fail).add_edge(START, "boom").add_edge("boom", END).compile()


def _slow(name: str):
    async def step(state: State) -> dict:
        # Each node sleeps for the seconds given as the first item ("sleep:0.5"), default 0.2.
        items = state.get("items") or []
        first = items[0] if items else ""
        delay = float(first.split(":", 1)[1]) if first.startswith("sleep:") else 0.2
        get_stream_writer()({"node": name})
        await asyncio.sleep(delay)
        return {"items": [name]}

    return step


slow = _chain([f"s{i}" for i in range(5)], _slow).compile()


def _ledger(name: str):
    """Records each execution in a ledger file outside the graph, then takes its time."""

    def step(state: State) -> dict:
        ledger = os.environ.get("AGENTSERVER_TEST_LEDGER")
        if ledger:
            with open(ledger, "a") as handle:
                handle.write(f"{name}\n")
        time.sleep(float(os.environ.get("AGENTSERVER_TEST_LEDGER_DELAY", "0.3")))
        return {"items": [name]}

    return step


ledger10 = _chain([f"l{i}" for i in range(10)], _ledger).compile()

_flaky_calls: dict[str, int] = {}


def _flaky(state: State) -> dict:
    """Fails twice per thread then succeeds: exercises node RetryPolicy."""
    key = (state.get("items") or ["?"])[0]
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] < 3:
        raise ConnectionError(f"transient failure {_flaky_calls[key]}")
    return {"items": [f"ok after {_flaky_calls[key]}"]}


flaky = (
    StateGraph(State)
    .add_node("flaky", _flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
    .add_edge(START, "flaky")
    .add_edge("flaky", END)
    .compile()
)


def _block(state: State) -> dict:
    """Blocks its thread (no await) for the seconds given as the first item ("block:3")."""
    first = (state.get("items") or ["block:1"])[0]
    time.sleep(float(first.split(":", 1)[1]))
    return {"items": ["unblocked"]}


block = StateGraph(State).add_node("block", _block).add_edge(START, "block").add_edge("block", END).compile()


def make_configurable(config: dict) -> StateGraph:
    """A factory taking the run config: the node echoes configurable['greeting']."""
    greeting = (config.get("configurable") or {}).get("greeting", "hello")

    def greet(state: State) -> dict:
        return {"items": [greeting]}

    return StateGraph(State).add_node("greet", greet).add_edge(START, "greet").add_edge("greet", END)


@contextlib.asynccontextmanager
async def make_managed(config: dict):
    """An async context-manager factory: resources opened for the run, closed after it."""
    yield echo


def _env(state: State) -> dict:
    return {"items": [os.environ.get("AGENTSERVER_TEST_ENV", "unset")]}


env = StateGraph(State).add_node("env", _env).add_edge(START, "env").add_edge("env", END)


def _settle(state: approval.State) -> dict:
    """Gives a client time to subscribe before the run pauses: the sync SDK's thread stream
    ends a projection when its separate lifecycle connection sees the interrupt, and misses
    or hangs on values of a run that paused before its subscription was in place."""
    time.sleep(0.3)
    return {}


# The example's approval graph, reaching its interrupt() 0.3 s after the run starts.
paused_approval = (
    StateGraph(approval.State)
    .add_node("settle", _settle)
    .add_node("ask", approval.ask)
    .add_node("act", approval.act)
    .add_edge(START, "settle")
    .add_edge("settle", "ask")
    .add_edge("ask", "act")
    .add_edge("act", END)
    .compile()
)
