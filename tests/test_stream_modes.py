"""Every stream mode's event names and payloads, resumable joins and disconnects (SDK + raw HTTP)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.live import LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hello world"}]}


async def collect(client, thread_id, assistant, **kwargs) -> list:
    return [part async for part in client.runs.stream(thread_id, assistant, **kwargs)]


async def test_legacy_messages_mode_accumulates_tokens(client) -> None:
    parts = await collect(client, None, "agent", input=HUMAN, stream_mode="messages")
    names = [p.event for p in parts]
    assert names[0] == "metadata"
    metadata_events = [p for p in parts if p.event == "messages/metadata"]
    partials = [p.data for p in parts if p.event == "messages/partial"]
    assert metadata_events and partials
    contents = [partial[0]["content"] for partial in partials]
    assert contents[-1] == "You said: hello world"
    assert all(later.startswith(earlier) for earlier, later in zip(contents, contents[1:], strict=False))
    message_id = partials[-1][0]["id"]
    assert message_id in metadata_events[0].data
    assert metadata_events[0].data[message_id]["metadata"]["langgraph_node"] == "respond"


async def test_messages_tuple_and_values_payloads(client) -> None:
    parts = await collect(client, None, "agent", input=HUMAN, stream_mode=["messages-tuple", "values"])
    messages = [p.data for p in parts if p.event == "messages"]
    chunk, metadata = messages[0]
    assert chunk["type"] == "AIMessageChunk"
    assert metadata["langgraph_node"] == "respond"
    final = [p.data for p in parts if p.event == "values"][-1]
    assert [m["type"] for m in final["messages"]] == ["human", "ai"]


async def test_subgraph_events_are_namespaced(client) -> None:
    parts = await collect(
        client, None, "nested", input={"items": ["go"]}, stream_mode=["updates", "custom"], stream_subgraphs=True
    )
    names = [p.event for p in parts]
    assert "updates" in names
    sub_updates = [n for n in names if n.startswith("updates|worker:")]
    assert len(sub_updates) == 2  # research, summarise
    assert any(n.startswith("custom|worker:") for n in names)
    flat = await collect(client, None, "nested", input={"items": ["go"]}, stream_mode=["updates"])
    assert all("|" not in p.event for p in flat)


async def test_interrupt_in_values_and_updates(client) -> None:
    thread = await client.threads.create()
    parts = await collect(
        client, thread["thread_id"], "interrupt_once", input={"items": ["q"]}, stream_mode=["values", "updates"]
    )
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["__interrupt__"][0]["value"] == {"question": "q"}
    assert set(last_values["__interrupt__"][0]) >= {"id", "value"}
    assert any("__interrupt__" in p.data for p in parts if p.event == "updates")


async def test_debug_tasks_checkpoints_and_events_modes(client) -> None:
    thread = await client.threads.create()
    parts = await collect(
        client, thread["thread_id"], "echo", input={"items": ["d"]},
        stream_mode=["debug", "tasks", "checkpoints", "events"],
    )
    by_name: dict[str, list] = {}
    for part in parts:
        by_name.setdefault(part.event, []).append(part.data)
    checkpoint = by_name["checkpoints"][-1]
    assert set(checkpoint) >= {"config", "values", "metadata", "next", "tasks", "checkpoint", "parent_checkpoint"}
    assert checkpoint["checkpoint"]["thread_id"] == thread["thread_id"]
    assert {d["type"] for d in by_name["debug"]} >= {"checkpoint", "task", "task_result"}
    assert {"id", "name"} <= set(by_name["tasks"][0])
    kinds = {e["event"] for e in by_name["events"]}
    assert {"on_chain_start", "on_chain_end"} <= kinds


async def test_resumable_join_replays_from_a_middle_id_and_from_start(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    parts = await collect(
        client, tid, "chain10", input={"items": ["r"]}, stream_mode="updates", stream_resumable=True
    )
    assert all(p.id for p in parts)
    run_id = parts[0].data["run_id"]
    middle = parts[4]
    rest = [p async for p in client.runs.join_stream(tid, run_id, last_event_id=middle.id)]
    assert [(p.event, p.data) for p in rest] == [(p.event, p.data) for p in parts[5:]]
    everything = [p async for p in client.runs.join_stream(tid, run_id, last_event_id="-1")]
    assert [(p.event, p.data) for p in everything] == [(p.event, p.data) for p in parts]
    filtered = [p async for p in client.runs.join_stream(tid, run_id, last_event_id="-1", stream_mode="metadata")]
    assert [p.event for p in filtered] == ["metadata"]


async def test_join_stream_of_running_run_sees_the_rest(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"items": ["sleep:0.3"]}, stream_mode="updates")
    await asyncio.sleep(0.2)
    parts = [p async for p in client.runs.join_stream(tid, run["run_id"])]
    nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert nodes and nodes[-1] == "s4"
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"


async def test_sse_framing_and_headers(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream(
            "POST", f"/threads/{tid}/runs/stream",
            json={"assistant_id": "echo", "input": {"items": ["f"]}, "stream_resumable": True},
        ) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["location"].endswith("/stream")
    assert response.headers["content-location"].startswith(f"/threads/{tid}/runs/")
    frames = body.split(b"\r\n\r\n")
    assert frames[0].startswith(b"event: metadata\r\ndata: {")
    assert b"\r\nid: " in frames[0]
    assert b"event: end" not in body


async def test_heartbeat_while_silent(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream(
            "POST", f"/threads/{thread['thread_id']}/runs/stream",
            json={"assistant_id": "block", "input": {"items": ["block:6"]}},
        ) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert b": heartbeat\r\n\r\n" in body
    assert body.rstrip().endswith(b"}")


@pytest.mark.parametrize("on_disconnect,expected", [("cancel", "interrupted"), ("continue", "success")])
async def test_on_disconnect(server: LiveServer, client, on_disconnect: str, expected: str) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream(
            "POST", f"/threads/{tid}/runs/stream",
            json={"assistant_id": "slow", "input": {"items": ["sleep:0.4"]}, "on_disconnect": on_disconnect},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # got metadata: now hang up
    run = (await client.runs.list(tid))[0]
    await client.runs.join(tid, run["run_id"])
    deadline = time.monotonic() + 10
    while (await client.runs.get(tid, run["run_id"]))["status"] in {"pending", "running"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == expected


async def test_join_filters_accept_every_list_spelling(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    parts = await collect(
        client, tid, "slow", input={"items": ["sleep:0"]}, stream_mode=["updates", "custom", "values"],
        stream_resumable=True,
    )
    run_id = parts[0].data["run_id"]
    path = f"/threads/{tid}/runs/{run_id}/stream"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for query in ("?stream_mode=updates&stream_mode=custom", '?stream_mode=["updates","custom"]',
                      "?stream_mode=updates,custom"):
            body = (await http.get(path + query, headers={"Last-Event-ID": "-1"})).text
            names = {line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")}
            assert names == {"metadata", "updates", "custom"}, (query, names)


async def test_cancel_on_disconnect_of_a_join(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"items": ["sleep:0.4"]}, stream_mode="custom")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream(
            "GET", f"/threads/{tid}/runs/{run['run_id']}/stream?cancel_on_disconnect=true",
            headers={"Last-Event-ID": "-1"},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: custom"):
                    break
    await client.runs.join(tid, run["run_id"])
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
