"""Runs through the unmodified langgraph-sdk: every run method, on both deployments."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError

from tests.live import LiveServer


async def test_wait_returns_final_values(client) -> None:
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "echo", input={"items": ["t"]})
    assert result == {"items": ["t", "echo:t"]}
    runs = await client.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success"]
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"


async def test_tasks_a_graph_leaves_behind_end_with_its_run(client, tmp_path) -> None:
    """As with asyncio.run: a task a node started and never awaited is cancelled as the run
    ends (before its outcome is told), instead of living on in the worker beside later runs."""
    marker = tmp_path / "outcome"
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "leaves_task", input={"items": [str(marker)]})
    assert result == {"items": [str(marker), "left"]}
    assert marker.exists() and marker.read_text() == "cancelled"


async def test_stream_yields_metadata_first_then_updates_in_order(client) -> None:
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"], "chain10", input={"items": ["t"]}, stream_mode=["updates", "values"]
        )
    ]
    assert parts[0].event == "metadata"
    assert parts[0].data["attempt"] == 1
    run_id = parts[0].data["run_id"]
    updates = [p.data for p in parts if p.event == "updates"]
    assert [next(iter(u)) for u in updates] == [f"n{i}" for i in range(10)]
    assert parts[-1].event == "values"
    assert parts[-1].data["items"] == ["t"] + [f"n{i}" for i in range(10)]
    assert all(p.event != "end" for p in parts)
    # The run is terminal when the stream closes: the SDK needs no reconnect.
    assert (await client.runs.get(thread["thread_id"], run_id))["status"] == "success"


async def test_custom_and_messages_tuple_modes(client) -> None:
    thread = await client.threads.create()
    events = [
        part.event
        async for part in client.runs.stream(
            thread["thread_id"], "slow", input={"items": ["sleep:0"]}, stream_mode=["custom"]
        )
    ]
    assert events == ["metadata"] + ["custom"] * 5
    chunks = [
        part.data
        async for part in client.runs.stream(
            None, "agent", input={"messages": [{"role": "user", "content": "hi there"}]},
            stream_mode="messages-tuple",
        )
        if part.event == "messages"
    ]
    text = "".join(chunk["content"] for chunk, _meta in chunks)
    assert text == "You said: hi there"
    assert len(chunks) > 2  # token by token
    assert chunks[0][1]["langgraph_node"] == "respond"


async def test_background_run_then_join(client) -> None:
    thread = await client.threads.create()
    created = []
    run = await client.runs.create(
        thread["thread_id"], "chain10", input={"items": ["b"]}, on_run_created=created.append
    )
    assert run["status"] in {"pending", "running"}
    assert created and created[0]["run_id"] == run["run_id"]
    result = await client.runs.join(thread["thread_id"], run["run_id"])
    assert result["items"][-1] == "n9"
    # Joining a finished run answers from stored state.
    assert await client.runs.join(thread["thread_id"], run["run_id"]) == result
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"


async def test_interrupt_then_resume(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.wait(tid, "interrupt_once", input={"items": ["q"]})
    assert first["__interrupt__"][0]["value"] == {"question": "q"}
    runs = await client.runs.list(tid)
    assert runs[0]["status"] == "success"
    assert (await client.threads.get(tid))["status"] == "interrupted"
    state = await client.threads.get_state(tid)
    assert state["next"] == ["ask"]
    assert state["tasks"][0]["interrupts"][0]["value"] == {"question": "q"}
    second = await client.runs.wait(tid, "interrupt_once", command={"resume": "yes"})
    assert second == {"items": ["q", "answer:yes"]}
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_failing_graph_reports_error(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    with pytest.raises(Exception, match="ValueError: this graph always fails"):
        await client.runs.wait(tid, "fail", input={"items": ["x"]})
    body = await client.runs.wait(tid, "fail", input={"items": ["x"]}, raise_error=False)
    assert body == {"__error__": {"error": "ValueError", "message": "this graph always fails"}}
    parts = [p async for p in client.runs.stream(tid, "fail", input={"items": ["x"]})]
    assert parts[-1].event == "error"
    assert parts[-1].data["error"] == "ValueError"
    assert (await client.threads.get(tid))["status"] == "error"
    assert (await client.runs.list(tid))[0]["status"] == "error"


async def test_stateless_runs(client) -> None:
    before = await client.threads.count()
    assert await client.runs.wait(None, "echo", input={"items": ["s"]}) == {"items": ["s", "echo:s"]}
    parts = [p.event async for p in client.runs.stream(None, "echo", input={"items": ["s"]})]
    assert parts[0] == "metadata" and "values" in parts
    await asyncio.sleep(0.2)
    assert await client.threads.count() == before  # temporary threads are deleted
    kept = await client.runs.wait(None, "echo", input={"items": ["k"]}, on_completion="keep")
    assert kept["items"] == ["k", "echo:k"]
    assert await client.threads.count() == before + 1
    # runs.wait surfaces HTTP errors as httpx's (the SDK's wait does not map them).
    with pytest.raises(httpx.HTTPStatusError) as failure:
        await client.runs.wait(None, "interrupt_once", command={"resume": "x"})
    assert failure.value.response.status_code == 400
    with pytest.raises(BadRequestError):
        await client.runs.create(None, "interrupt_once", command={"resume": "x"})


async def test_if_not_exists(client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await client.runs.create(missing, "echo", input={"items": ["x"]})
    result = await client.runs.wait(missing, "echo", input={"items": ["x"]}, if_not_exists="create")
    assert result["items"] == ["x", "echo:x"]
    thread = await client.threads.get(missing)
    assert thread["metadata"]["graph_id"] == "echo"


async def test_concurrent_runs_may_all_create_the_same_thread(client) -> None:
    """The first admission creates the thread; the others find it and queue behind its run."""
    missing = str(uuid.uuid4())
    runs = await asyncio.gather(
        *(
            client.runs.create(missing, "echo", input={"items": [str(i)]}, if_not_exists="create")
            for i in range(8)
        )
    )
    assert len({run["thread_id"] for run in runs}) == 1
    for run in runs:
        await client.runs.join(missing, run["run_id"])
    statuses = [r["status"] for r in await client.runs.list(missing, limit=20)]
    assert statuses == ["success"] * 8
    history = await client.threads.get_history(missing, limit=100)
    inputs = {h["metadata"].get("run_id") for h in history if h["metadata"].get("source") == "input"}
    assert inputs == {run["run_id"] for run in runs}


async def test_cancel_interrupt_and_rollback(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.5)
    assert await client.runs.cancel(tid, run["run_id"]) is None
    final = await client.runs.join(tid, run["run_id"])
    assert "s4" not in final.get("items", [])
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    with pytest.raises(NotFoundError):
        await client.runs.cancel(tid, run["run_id"])

    run = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.5)
    await client.runs.cancel(tid, run["run_id"], wait=True, action="rollback")
    ids = [r["run_id"] for r in await client.runs.list(tid)]
    assert run["run_id"] not in ids
    history = await client.threads.get_history(tid, limit=100)
    assert all(h["metadata"].get("run_id") != run["run_id"] for h in history)


async def test_double_texting_reject_and_enqueue(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "slow", input={"items": ["sleep:0.3"]})
    with pytest.raises(ConflictError):
        await client.runs.create(tid, "echo", input={"items": ["x"]}, multitask_strategy="reject")
    second = await client.runs.create(tid, "echo", input={"items": ["e"]}, multitask_strategy="enqueue")
    result = await client.runs.join(tid, second["run_id"])
    assert result["items"][-1] == "echo:e"
    assert "s4" in result["items"]  # the first run finished before the second started
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "success"
    # The rejected run left nothing behind.
    assert {r["run_id"] for r in await client.runs.list(tid)} == {first["run_id"], second["run_id"]}


async def test_double_texting_interrupt_and_rollback(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.3)
    second = await client.runs.create(tid, "echo", input={"items": ["i"]}, multitask_strategy="interrupt")
    await client.runs.join(tid, second["run_id"])
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"

    third = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.3)
    fourth = await client.runs.create(tid, "echo", input={"items": ["r"]}, multitask_strategy="rollback")
    await client.runs.join(tid, fourth["run_id"])
    ids = [r["run_id"] for r in await client.runs.list(tid)]
    assert third["run_id"] not in ids and fourth["run_id"] in ids


async def test_bad_run_input_is_4xx(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        cases = [
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "nope"}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": str(uuid.uuid4())}, 404),
            ("POST", f"/threads/{tid}/runs", {}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "stream_mode": "tools"}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "multitask_strategy": "x"}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "checkpoint_id": "x"}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "webhook": "http://127.0.0.1/x"}, 422),
            (
                "POST", f"/threads/{tid}/runs",
                {"assistant_id": "echo", "context": {"a": 1}, "config": {"configurable": {"b": 2}}}, 400,
            ),
            ("POST", "/threads/not-a-uuid/runs", {"assistant_id": "echo"}, 422),
            ("GET", f"/threads/{tid}/runs/not-a-uuid", None, 422),
            ("GET", f"/threads/{tid}/runs/{uuid.uuid4()}", None, 404),
            ("POST", f"/threads/{tid}/runs/{uuid.uuid4()}/cancel", None, 404),
            ("POST", "/runs/cancel", {"status": "all", "thread_id": tid, "run_ids": [tid]}, 422),
            ("POST", "/runs/batch", [], 422),
            # Postgres stores no NUL characters (these were 500s on insert).
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "input": {"items": ["\u0000"]}}, 422),
            ("POST", "/runs", {"assistant_id": "echo", "metadata": {"k": "\u0000"}}, 422),
            ("POST", f"/threads/{tid}/runs/wait", {"assistant_id": "echo", "config": {"tags": ["\u0000"]}}, 422),
            ("POST", "/runs/batch", [{"assistant_id": "echo", "command": {"resume": "\u0000"}}], 422),
            # Paging past the database's integers (was a 500 from the query).
            ("GET", f"/threads/{tid}/runs?offset={10**20}", None, 422),
            ("GET", f"/threads/{tid}/runs?limit={2**63}", None, 422),
        ]
        for method, path, body, expected in cases:
            response = await http.request(method, path, json=body)
            assert response.status_code == expected, (path, body, response.text)
            assert "detail" in response.json()
        bad_json = await http.post(f"/threads/{tid}/runs", content=b"{nope", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422
        assert (await http.get(f"/threads/{tid}/runs")).json() == []


def test_run_with_numbers_beyond_64_bits_reads_back(server: LiveServer) -> None:
    """Postgres jsonb hands 1e30 back as the integer 10**30: reading the run was a 500."""
    thread_id = httpx.post(f"{server.url}/threads", json={}).json()["thread_id"]
    created = httpx.post(
        f"{server.url}/threads/{thread_id}/runs",
        json={"assistant_id": "echo", "input": {"items": ["a"]}, "metadata": {"big": 1e30}},
    )
    assert created.status_code == 200, created.text
    run = httpx.get(f"{server.url}/threads/{thread_id}/runs/{created.json()['run_id']}")
    assert run.status_code == 200, run.text
    assert float(run.json()["metadata"]["big"]) == 1e30
    listed = httpx.get(f"{server.url}/threads/{thread_id}/runs")
    assert listed.status_code == 200, listed.text


def test_sync_client_smoke(sync_client) -> None:
    thread = sync_client.threads.create()
    assert sync_client.runs.wait(thread["thread_id"], "echo", input={"items": ["y"]})["items"] == ["y", "echo:y"]
    events = [p.event for p in sync_client.runs.stream(thread["thread_id"], "echo", input={"items": ["z"]})]
    assert events[0] == "metadata"
