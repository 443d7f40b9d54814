"""The thread stream, GET /threads/{tid}/stream, through the unmodified SDK (api-reference §2.7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError
from langgraph_sdk.schema import StreamPart

from tests.live import LiveServer

TIMEOUT = 30


async def collect(
    stream: AsyncIterator[StreamPart], until: Callable[[list[StreamPart]], bool], timeout: float = TIMEOUT
) -> list[StreamPart]:
    """Parts of an endless stream up to the first one after which ``until(parts)`` holds."""
    parts: list[StreamPart] = []
    async with asyncio.timeout(timeout):
        async for part in stream:
            parts.append(part)
            if until(parts):
                break
    return parts


def run_done(run_id: str) -> Callable[[list[StreamPart]], bool]:
    return lambda parts: parts[-1].data == {"status": "run_done", "run_id": run_id}


def values_of(run_id: str, parts: list[StreamPart]) -> list[dict]:
    """The values frames between ``run_id``'s metadata frame and the next run's."""
    current, out = None, []
    for part in parts:
        if part.event == "metadata" and "attempt" in part.data:
            current = part.data["run_id"]
        elif part.event == "values" and current == run_id:
            out.append(part.data)
    return out


async def test_run_modes_follow_every_run_including_later_ones(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "echo", input={"items": ["one"]})
    stream = await client.threads.join_stream(tid, last_event_id="-1")
    parts = await collect(stream, lambda p: p[-1].event == "values" and p[-1].data["items"] == ["one", "echo:one"])
    # The run started after the stream was opened is picked up on the same connection.
    second = await client.runs.create(tid, "echo", input={"items": ["two"]})
    parts += await collect(
        stream, lambda p: p[-1].event == "values" and p[-1].data["items"][-1] == "echo:two"
    )
    metadata = [p.data for p in parts if p.event == "metadata"]
    assert metadata == [
        {"run_id": first["run_id"], "attempt": 1},
        {"run_id": second["run_id"], "attempt": 1},
    ]
    assert values_of(first["run_id"], parts)[-1] == {"items": ["one", "echo:one"]}
    assert values_of(second["run_id"], parts)[-1]["items"][-2:] == ["two", "echo:two"]
    assert all(p.id for p in parts)  # frames always carry ids
    assert all(p.data.get("status") != "run_done" for p in parts)  # run_modes has no lifecycle frames


async def test_lifecycle_mode_reports_run_start_and_run_done(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "chain10", input={"items": []}, stream_mode=["values", "updates"])
    stream = await client.threads.join_stream(tid, stream_mode="lifecycle", last_event_id="-1")
    parts = await collect(stream, run_done(run["run_id"]))
    assert [(p.event, p.data) for p in parts] == [
        ("metadata", {"run_id": run["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run["run_id"]}),
    ]
    # run_done comes after the run's terminal status is stored.
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"


async def test_state_update_frames_follow_update_state(client) -> None:
    thread = await client.threads.create(graph_id="echo")
    tid = thread["thread_id"]
    await client.runs.wait(tid, "echo", input={"items": ["a"]})
    stream = await client.threads.join_stream(tid, stream_mode=["state_update", "lifecycle"], last_event_id="-1")
    # Replayed history first: the run's lifecycle, then our update arrives live.
    parts = await collect(stream, lambda p: p[-1].data.get("status") == "run_done")
    await client.threads.update_state(tid, {"items": ["manual"]}, as_node="echo")
    parts = await collect(stream, lambda p: p[-1].event == "state_update")
    update = parts[-1]
    assert update.data["thread_id"] == tid
    assert update.data["state"]["values"] == {"items": ["a", "echo:a", "manual"]}
    assert update.data["state"]["checkpoint"]["checkpoint_id"]
    assert update.id


async def test_last_event_id_replays_across_runs_exactly(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    runs = []
    for word in ("x", "y"):
        runs.append(await client.runs.create(tid, "chain10", input={"items": [word]}, stream_mode=["values", "updates"]))
        await client.runs.join(tid, runs[-1]["run_id"])
    full = await collect(
        await client.threads.join_stream(tid, stream_mode=["run_modes", "lifecycle"], last_event_id="-1"),
        run_done(runs[1]["run_id"]),
    )
    ids = [p.id for p in full]
    assert len(set(ids)) == len(ids)
    assert [p.data["run_id"] for p in full if p.event == "metadata" and "attempt" in p.data] == [
        r["run_id"] for r in runs
    ]
    # Resume from an event in the middle of the first run: exactly what followed it, across runs.
    middle = next(i for i, p in enumerate(full) if p.event == "updates" and "n5" in p.data)
    tail = await collect(
        await client.threads.join_stream(
            tid, stream_mode=["run_modes", "lifecycle"], last_event_id=full[middle].id
        ),
        run_done(runs[1]["run_id"]),
    )
    assert [(p.id, p.event, p.data) for p in tail] == [(p.id, p.event, p.data) for p in full[middle + 1 :]]


async def test_stream_mode_filters_events_on_join(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "chain10", input={"items": []}, stream_mode=["values", "updates"])
    await client.runs.join(tid, run["run_id"])
    parts = await collect(
        await client.threads.join_stream(tid, stream_mode=["lifecycle", "run_modes"], last_event_id="-"),
        run_done(run["run_id"]),
    )
    events = [p.event for p in parts]
    assert events[0] == "metadata" and events.count("metadata") == 2  # start once, run_done once
    assert events.count("updates") == 10


async def test_invalid_mode_is_422_and_missing_thread_is_404(client, server: LiveServer) -> None:
    thread = await client.threads.create()
    with pytest.raises(UnprocessableEntityError):
        async for _ in await client.threads.join_stream(thread["thread_id"], stream_mode="bogus"):
            pass
    with pytest.raises(NotFoundError):
        async for _ in await client.threads.join_stream("00000000-0000-4000-8000-000000000000"):
            pass
    # The reference's query name and JSON lists are accepted too.
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(f"/threads/{thread['thread_id']}/stream", params={"stream_modes": '["nope"]'})
        assert response.status_code == 422
        async with http.stream(
            "GET", f"/threads/{thread['thread_id']}/stream", params={"stream_modes": '["lifecycle","state_update"]'}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")


async def test_heartbeat_while_thread_is_silent(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        thread = (await http.post("/threads", json={})).json()
        async with http.stream("GET", f"/threads/{thread['thread_id']}/stream") as response:
            async with asyncio.timeout(12):
                async for chunk in response.aiter_bytes():
                    assert chunk == b": heartbeat\r\n\r\n"
                    break
