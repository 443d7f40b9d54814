"""langgraph's RemoteGraph against our server: the graph API from another process."""

from __future__ import annotations

import uuid

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.pregel.remote import RemoteException, RemoteGraph

from tests.graphs.graphs import State
from tests.live import LiveServer


def remote(server: LiveServer, name: str) -> RemoteGraph:
    return RemoteGraph(name, url=server.url, api_key=None)


def test_invoke_stream_and_state(server: LiveServer) -> None:
    graph = remote(server, "chain10")
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    result = graph.invoke({"items": ["r"]}, config)
    assert result["items"] == ["r"] + [f"n{i}" for i in range(10)]
    state = graph.get_state(config)
    assert state.values["items"][-1] == "n9"
    assert state.next == ()
    history = list(graph.get_state_history(config, limit=3))
    assert len(history) == 3
    updated = graph.update_state(config, {"items": ["edited"]}, as_node="n9")
    assert updated["configurable"]["checkpoint_id"]
    assert graph.get_state(config).values["items"][-1] == "edited"
    chunks = list(graph.stream({"items": ["s"]}, {"configurable": {"thread_id": str(uuid.uuid4())}},
                               stream_mode="updates"))
    assert [next(iter(c)) for c in chunks] == [f"n{i}" for i in range(10)]
    drawing = graph.get_graph()
    assert {"n0", "n9"} <= set(drawing.nodes)


def test_remote_graph_as_a_node_propagates_interrupts_and_errors(server: LiveServer) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    asker = remote(server, "interrupt_once")
    parent = (
        StateGraph(State).add_node("remote", asker).add_edge(START, "remote").add_edge("remote", END)
        .compile(checkpointer=InMemorySaver())
    )
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    parent.invoke({"items": ["q"]}, config)
    paused = parent.get_state(config)
    assert paused.next == ("remote",)
    assert paused.tasks[0].interrupts[0].value == {"question": "q"}

    failing = remote(server, "fail")
    with pytest.raises(RemoteException):
        failing.invoke({"items": ["x"]}, {"configurable": {"thread_id": str(uuid.uuid4())}})
    # At the top level (not nested in a graph) the interrupt comes back in the values.
    top = asker.invoke({"items": ["y"]}, {"configurable": {"thread_id": str(uuid.uuid4())}})
    assert top["__interrupt__"][0]["value"] == {"question": "y"}
