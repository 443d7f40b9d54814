"""Run options of §3.3-§3.7 and concurrent double-texting, through the SDK on both deployments."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from langgraph_sdk.errors import ConflictError

from tests.live import LiveServer

CHAIN = [f"n{i}" for i in range(10)]


async def test_after_seconds_delays_the_start(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "echo", input={"items": ["later"]}, after_seconds=1)
    await asyncio.sleep(0.5)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "pending"
    assert (await client.threads.get(tid))["status"] == "busy"
    assert (await client.runs.join(tid, run["run_id"]))["items"] == ["later", "echo:later"]


async def test_checkpoint_forks_history(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "echo", input={"items": ["a"]})
    fork_point = (await client.threads.get_state(tid))["checkpoint"]["checkpoint_id"]
    await client.runs.wait(tid, "echo", input={"items": ["b"]})
    forked = await client.runs.wait(tid, "echo", input={"items": ["c"]}, checkpoint={"checkpoint_id": fork_point})
    assert forked["items"] == ["a", "echo:a", "c", "echo:c"]
    replayed = await client.runs.wait(tid, "echo", input={"items": ["d"]}, checkpoint_id=fork_point)
    assert replayed["items"] == ["a", "echo:a", "d", "echo:d"]


async def test_static_breakpoints_then_continue(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.wait(tid, "chain10", input={"items": ["s"]}, interrupt_before=["n3"])
    assert first["items"] == ["s", "n0", "n1", "n2"]
    assert (await client.threads.get(tid))["status"] == "interrupted"
    assert (await client.threads.get_state(tid))["next"] == ["n3"]
    rest = await client.runs.wait(tid, "chain10", input=None)
    assert rest["items"] == ["s", *CHAIN]
    after_all = await client.runs.wait(
        (await client.threads.create())["thread_id"], "chain10", input={"items": ["x"]}, interrupt_after="*"
    )
    assert after_all["items"] == ["x", "n0"]


async def test_command_goto_and_update_match_local_langgraph(client) -> None:
    """A run's Command behaves exactly as the same Command given to the graph in-process."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from tests.graphs.graphs import chain10

    local = chain10.copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "local"}}
    local.invoke({"items": ["s"]}, config, interrupt_before=["n3"])
    expected = local.invoke(Command(goto="n8", update={"items": ["jump"]}), config)

    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "chain10", input={"items": ["s"]}, interrupt_before=["n3"])
    result = await client.runs.wait(tid, "chain10", command={"goto": "n8", "update": {"items": ["jump"]}})
    assert result["items"] == expected["items"]
    assert "jump" in result["items"] and result["items"][-1] == "n9"


async def test_node_retry_policy(client) -> None:
    key = f"flaky-{uuid.uuid4()}"
    result = await client.runs.wait(None, "flaky", input={"items": [key]})
    assert result["items"] == [key, "ok after 3"]


async def test_durability_exit_writes_fewer_checkpoints(client) -> None:
    lengths = {}
    for durability in ("sync", "exit"):
        thread = await client.threads.create()
        result = await client.runs.wait(thread["thread_id"], "chain10", input={"items": ["x"]}, durability=durability)
        assert result["items"] == ["x", *CHAIN]
        lengths[durability] = len(await client.threads.get_history(thread["thread_id"], limit=100))
    assert lengths["exit"] < lengths["sync"]


async def test_factory_graph_reads_the_run_config(client) -> None:
    result = await client.runs.wait(
        None, "configurable", input={"items": []}, config={"configurable": {"greeting": "bonjour"}}
    )
    assert result["items"] == ["bonjour"]


async def test_wait_sends_keepalive_newlines(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            f"/threads/{thread['thread_id']}/runs/wait",
            json={"assistant_id": "block", "input": {"items": ["block:6"]}},
        )
    assert response.status_code == 200
    assert response.text.startswith("\n")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.json()["items"][-1] == "unblocked"
    assert response.headers["location"].endswith("/join")


async def test_an_output_ready_before_the_first_keepalive_is_sent_with_its_length(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        waited = await http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "echo", "input": {"items": ["w"]}})
        run_id = waited.headers["content-location"].rsplit("/", 1)[1]
        joined = await http.get(f"/threads/{tid}/runs/{run_id}/join")
    for response in (waited, joined):
        assert response.status_code == 200
        assert "transfer-encoding" not in response.headers
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.json() == {"items": ["w", "echo:w"]}


async def test_a_body_that_arrives_in_many_pieces_is_read_whole(server: LiveServer, client) -> None:
    """The server reads a one-piece body as it is and spools longer ones: both arrive whole."""
    metadata = {"blob": "x" * 3_000_000}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        created = await http.post("/threads", json={"metadata": metadata})
        assert created.status_code == 200
        assert (await client.threads.get(created.json()["thread_id"]))["metadata"] == metadata


async def test_delete_batch_and_bulk_cancel(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    done = await client.runs.create(tid, "echo", input={"items": ["x"]})
    await client.runs.join(tid, done["run_id"])
    busy = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.2)
    with pytest.raises(ConflictError):
        await client.runs.delete(tid, busy["run_id"])
    await client.runs.cancel_many(thread_id=tid, run_ids=[busy["run_id"]])
    await client.runs.join(tid, busy["run_id"])
    assert (await client.runs.get(tid, busy["run_id"]))["status"] == "interrupted"
    await client.runs.delete(tid, done["run_id"])
    assert done["run_id"] not in [r["run_id"] for r in await client.runs.list(tid)]

    batch = await client.runs.create_batch(
        [{"assistant_id": "echo", "input": {"items": [str(i)]}} for i in range(3)]
    )
    assert len(batch) == 3
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for i, run in enumerate(batch):
            # GET /runs/{rid}/stream: the stateless join the reference advertises but lacks.
            response = await http.get(f"/runs/{run['run_id']}/stream", headers={"Last-Event-ID": "-1"})
            assert response.text.startswith("event: metadata")
            assert f'"echo:{i}"' in response.text


async def test_cancel_stops_the_graph_before_its_next_node(server: LiveServer, client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"items": ["sleep:0.3"]}, stream_mode="custom")
    await asyncio.sleep(0.45)
    await client.runs.cancel(tid, run["run_id"])
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    started = [p async for p in client.runs.join_stream(tid, run["run_id"], last_event_id="-1") if p.event == "custom"]
    await asyncio.sleep(0.7)
    again = [p async for p in client.runs.join_stream(tid, run["run_id"], last_event_id="-1") if p.event == "custom"]
    assert len(again) == len(started) < 5


async def _admit_concurrently(client, tid: str, strategy: str, count: int = 20, graph: str = "echo") -> list:
    async def one(i: int):
        # Slow runs (5 nodes x 1.5 s) stay in flight while all twenty requests arrive, even on a loaded machine.
        items = ["sleep:1.5"] if graph == "slow" else [f"m{i}"]
        try:
            return await client.runs.create(tid, graph, input={"items": items}, multitask_strategy=strategy)
        except ConflictError as exc:
            return exc

    return await asyncio.gather(*(one(i) for i in range(count)))


async def test_twenty_concurrent_rejects_admit_one(client) -> None:
    thread = await client.threads.create()
    # Slow runs: the admitted one is still in flight while the other 19 arrive.
    results = await _admit_concurrently(client, thread["thread_id"], "reject", graph="slow")
    admitted = [r for r in results if isinstance(r, dict)]
    assert len(admitted) == 1
    assert sum(isinstance(r, ConflictError) for r in results) == 19


async def test_twenty_concurrent_enqueues_run_one_at_a_time(client) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    results = await _admit_concurrently(client, tid, "enqueue")
    for run in results:
        await client.runs.join(tid, run["run_id"])
    items = (await client.threads.get_state(tid))["values"]["items"]
    assert len(items) == 40
    assert all(items[k + 1] == f"echo:{items[k]}" for k in range(0, 40, 2))
    assert {r["status"] for r in await client.runs.list(tid, limit=50)} == {"success"}


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_twenty_concurrent_interrupts_leave_the_last_one(client, strategy: str) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.3)
    results = await _admit_concurrently(client, tid, strategy, graph="slow")
    for run in results:
        try:
            await client.runs.join(tid, run["run_id"])
        except httpx.HTTPStatusError as gone:  # rolled back: deleted with its checkpoints
            assert strategy == "rollback" and gone.response.status_code == 404
    runs = await client.runs.list(tid, limit=50)
    statuses = [r["status"] for r in runs]
    assert statuses.count("success") == 1
    if strategy == "interrupt":
        assert statuses.count("interrupted") == 20
    else:
        assert len(runs) == 1 and first["run_id"] not in [r["run_id"] for r in runs]
    assert (await client.threads.get(tid))["status"] == "idle"


# ------------------------------------------------- a thread lock held by another transaction
# Postgres (READ COMMITTED) evaluates a statement that waited for a row lock against the
# other tables as they were when the statement started. These tests hold a thread's lock
# as a concurrent admission would, queue a run under it, and check that whoever waited
# for the lock sees that run once it gets the lock.

QUEUE_A_COPY = (
    "INSERT INTO runs_run (run_id, thread_id, assistant_id, status, metadata, kwargs, multitask_strategy,"
    " created_at, updated_at, attempt, cancel_action)"
    " SELECT %s, thread_id, assistant_id, 'pending', metadata, kwargs, 'enqueue', now() + %s * interval '1 second',"
    " now(), 0, '' FROM runs_run WHERE run_id = %s"
)


def _until_a_lock_is_awaited(server: LiveServer, timeout: float = 20) -> None:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("nothing waited for the thread's lock")


def test_reject_waiting_for_the_thread_lock_sees_the_run_queued_meanwhile(prod_server: LiveServer) -> None:
    url = prod_server.url
    thread_id = httpx.post(f"{url}/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "echo", "input": {"items": ["a"]}}
    done = httpx.post(f"{url}/threads/{thread_id}/runs/wait", json=body)
    assert done.status_code == 200, done.text
    first_run = httpx.get(f"{url}/threads/{thread_id}/runs").json()[0]["run_id"]
    queued = str(uuid.uuid4())
    with psycopg.connect(prod_server.database_url) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("SELECT 1 FROM threads_thread WHERE thread_id = %s FOR UPDATE", [thread_id])
        holder.execute(QUEUE_A_COPY, [queued, 3600, first_run])  # due in an hour: no worker takes it
        reject = pool.submit(
            httpx.post, f"{url}/threads/{thread_id}/runs", json={**body, "multitask_strategy": "reject"}, timeout=60
        )
        _until_a_lock_is_awaited(prod_server)
        holder.commit()
        answer = reject.result()
    try:
        assert answer.status_code == 409, answer.text
    finally:
        with psycopg.connect(prod_server.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM runs_run WHERE run_id = %s", [queued])


def test_run_queued_while_the_previous_one_finishes_starts_at_once(prod_server: LiveServer) -> None:
    """The finishing worker waits for the thread's lock, then must see the run queued under
    it and start it (otherwise only the recovery sweep would, PENDING_REDISPATCH_SECONDS on)."""
    url = prod_server.url
    thread_id = httpx.post(f"{url}/threads", json={}).json()["thread_id"]
    running = httpx.post(
        f"{url}/threads/{thread_id}/runs", json={"assistant_id": "block", "input": {"items": ["block:1"]}}
    ).json()["run_id"]
    queued = str(uuid.uuid4())
    with psycopg.connect(prod_server.database_url) as holder:
        holder.execute("SELECT 1 FROM threads_thread WHERE thread_id = %s FOR UPDATE", [thread_id])
        _until_a_lock_is_awaited(prod_server)  # the finish of the running run
        holder.execute(QUEUE_A_COPY, [queued, 0, running])
        holder.commit()
    # The recovery sweep would start it only PENDING_REDISPATCH_SECONDS (30) after it was queued.
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/threads/{thread_id}/runs/{queued}").json()["status"] in {"pending", "running"}:
        assert time.monotonic() < deadline, "the queued run was left waiting for the recovery sweep"
        time.sleep(0.1)
    assert httpx.get(f"{url}/threads/{thread_id}/runs/{queued}").json()["status"] == "success"
    assert httpx.get(f"{url}/threads/{thread_id}").json()["status"] == "idle"


def test_a_request_abandoned_while_its_view_waits_holds_up_no_later_request(prod_server: LiveServer) -> None:
    """A client gives up while admission waits for the thread's lock: the request's thread is
    still busy, so the web process must not hand it to the next requests (they would wait for
    the lock too)."""
    url = prod_server.url
    thread_id = httpx.post(f"{url}/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "echo", "input": {"items": ["a"]}}
    with psycopg.connect(prod_server.database_url) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("SELECT 1 FROM threads_thread WHERE thread_id = %s FOR UPDATE", [thread_id])
        abandoned = pool.submit(httpx.post, f"{url}/threads/{thread_id}/runs", json=body, timeout=2)
        _until_a_lock_is_awaited(prod_server)
        with pytest.raises(httpx.ReadTimeout):
            abandoned.result()
        for _ in range(20):
            assert httpx.get(f"{url}/ok", timeout=5).status_code == 200
            assert httpx.get(f"{url}/threads/{thread_id}", timeout=5).status_code == 200
        holder.rollback()


def test_a_column_added_while_serving_breaks_no_prepared_statement(prod_server: LiveServer) -> None:
    """Postgres statements are prepared once a connection has run them a few times; a migration
    adding a column while the server runs must not break them (a prepared ``SELECT *`` fails
    with "cached plan must not change result type" on every later use of its connection)."""
    url = prod_server.url
    body = {"assistant_id": "echo", "input": {"items": ["x"]}}

    def run_once() -> httpx.Response:
        thread_id = httpx.post(f"{url}/threads", json={}).json()["thread_id"]
        return httpx.post(f"{url}/threads/{thread_id}/runs/wait", json=body, timeout=60)

    for _ in range(30):  # enough for the pooled connections to prepare the hot statements
        assert run_once().status_code == 200
    tables = ("threads_thread", "runs_run", "runs_assistant")
    with psycopg.connect(prod_server.database_url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN added_later integer")
    try:
        for _ in range(10):
            answer = run_once()
            assert answer.status_code == 200, answer.text
            assert answer.json()["items"] == ["x", "echo:x"]
    finally:
        with psycopg.connect(prod_server.database_url, autocommit=True) as conn:
            for table in tables:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN added_later")
