"""Durable execution under faults: real Celery worker processes killed, paused, restarted.

A short lease and a fast sweep make recovery quick; the ledger graph records every node
execution in a file outside the graph, so a test can tell what ran how many times.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from celery import Celery
from langgraph_sdk import get_client

from tests.live import LiveServer, wait_for

LEDGER_NODES = [f"l{i}" for i in range(10)]
FAULT_ENV = {
    "AGENTSERVER_LEASE_SECONDS": "2",
    "AGENTSERVER_HEARTBEAT_SECONDS": "0.5",
    "AGENTSERVER_PENDING_REDISPATCH_SECONDS": "1",
    "AGENTSERVER_TEST_LEDGER_DELAY": "0.3",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LiveServer]:
    live = LiveServer(mode="prod", workers=1, extra_env=FAULT_ENV).start()
    yield live
    live.stop()


@pytest.fixture
async def sdk(cluster: LiveServer) -> AsyncIterator:
    async with get_client(url=cluster.url, api_key=None) as client:
        yield client



def live_workers(cluster: LiveServer) -> list:
    return [p for p in cluster.worker_procs if "worker" in p.args and p.poll() is None]


async def test_killed_worker_run_resumes_from_last_checkpoint(cluster: LiveServer, sdk) -> None:
    start = len(cluster.ledger())
    thread = await sdk.threads.create()
    run = await sdk.runs.create(thread["thread_id"], "ledger10", input={"items": ["k"]})
    await wait_for(lambda: len(cluster.ledger()) - start >= 4)
    victim = live_workers(cluster)[0]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    cluster.start_worker()
    result = await asyncio.wait_for(sdk.runs.join(thread["thread_id"], run["run_id"]), 60)
    assert result["items"] == ["k", *LEDGER_NODES]
    counts = collections.Counter(cluster.ledger()[start:])
    assert set(counts) == set(LEDGER_NODES)
    # Only the node that was executing when the worker died ran twice.
    assert sum(counts.values()) <= len(LEDGER_NODES) + 1
    attempts = [
        part.data["attempt"]
        async for part in sdk.runs.join_stream(thread["thread_id"], run["run_id"], last_event_id="-1")
        if part.event == "metadata"
    ]
    assert attempts == [1, 2]
    assert (await sdk.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"


async def test_paused_worker_loses_its_lease_and_writes_nothing(cluster: LiveServer, sdk) -> None:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    paused = live_workers(cluster)[0]
    run = await sdk.runs.create(tid, "ledger10", input={"items": ["p"]})
    start = len(cluster.ledger())
    await wait_for(lambda: "l1" in cluster.ledger()[start - 1:] or len(cluster.ledger()) - start >= 2)
    cluster.start_worker()
    os.killpg(paused.pid, signal.SIGSTOP)
    try:
        result = await asyncio.wait_for(sdk.runs.join(tid, run["run_id"]), 60)
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    assert result["items"] == ["p", *LEDGER_NODES]
    await asyncio.sleep(2)  # the resumed worker tries its next write and is refused
    state = await sdk.threads.get_state(tid)
    assert state["values"]["items"] == ["p", *LEDGER_NODES]
    history = await sdk.threads.get_history(tid, limit=100)
    assert len({h["checkpoint"]["checkpoint_id"] for h in history}) == len(history)
    assert all(h["values"]["items"].count("l9") <= 1 for h in history)
    assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "success"


async def test_duplicate_message_executes_once(cluster: LiveServer, sdk) -> None:
    thread = await sdk.threads.create()
    start = len(cluster.ledger())
    broker = Celery(broker=cluster.redis_url)
    run = await sdk.runs.create(thread["thread_id"], "ledger10", input={"items": ["d"]})
    for _ in range(2):
        broker.send_task("runs.tasks.execute_run", args=[run["run_id"]])
    result = await asyncio.wait_for(sdk.runs.join(thread["thread_id"], run["run_id"]), 60)
    assert result["items"] == ["d", *LEDGER_NODES]
    await asyncio.sleep(1)
    assert collections.Counter(cluster.ledger()[start:]) == {node: 1 for node in LEDGER_NODES}


async def test_redis_flushed_while_runs_pending_sweep_recovers(cluster: LiveServer, sdk) -> None:
    for proc in live_workers(cluster):
        cluster.kill(proc)
    threads = [await sdk.threads.create() for _ in range(4)]
    runs = [await sdk.runs.create(t["thread_id"], "echo", input={"items": [str(i)]}) for i, t in enumerate(threads)]
    cluster.flush_redis()
    cluster.start_worker()
    for i, (thread, run) in enumerate(zip(threads, runs, strict=True)):
        result = await asyncio.wait_for(sdk.runs.join(thread["thread_id"], run["run_id"]), 60)
        assert result == {"items": [str(i), f"echo:{i}"]}


async def test_delayed_run_starts_after_its_worker_stopped_gracefully_before_it_was_due(
    cluster: LiveServer, sdk
) -> None:
    """A run scheduled for later waits in the memory of the worker that received its message;
    a worker stopped before the run is due takes the message with it (no broker redelivery is
    relied on), and the run still starts once due: the sweep sends it again."""
    thread = await sdk.threads.create()
    run = await sdk.runs.create(thread["thread_id"], "echo", input={"items": ["later"]}, after_seconds=2)
    await asyncio.sleep(0.5)
    for proc in live_workers(cluster):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    cluster.start_worker()
    result = await asyncio.wait_for(sdk.runs.join(thread["thread_id"], run["run_id"]), 60)
    assert result == {"items": ["later", "echo:later"]}


async def test_blocking_node_longer_than_lease_is_not_taken_over(cluster: LiveServer, sdk) -> None:
    thread = await sdk.threads.create()
    result = await asyncio.wait_for(
        sdk.runs.wait(thread["thread_id"], "block", input={"items": ["block:5"]}), 60
    )
    assert result["items"] == ["block:5", "unblocked"]
    attempts = [
        part.data["attempt"]
        async for part in sdk.runs.join_stream(
            thread["thread_id"], (await sdk.runs.list(thread["thread_id"]))[0]["run_id"], last_event_id="-1"
        )
        if part.event == "metadata"
    ]
    assert attempts == [1]


async def test_interrupted_thread_survives_restart_of_every_process(cluster: LiveServer, sdk) -> None:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    first = await sdk.runs.wait(tid, "interrupt_once", input={"items": ["r"]})
    assert "__interrupt__" in first
    cluster.restart()
    async with get_client(url=cluster.url, api_key=None) as fresh:
        assert (await fresh.threads.get(tid))["status"] == "interrupted"
        result = await fresh.runs.wait(tid, "interrupt_once", command={"resume": "later"})
    assert result == {"items": ["r", "answer:later"]}


def run_row(cluster: LiveServer, run_id: str) -> tuple[str, int]:
    """The run's status and attempt count, read straight from the cluster's database."""
    with psycopg.connect(cluster.database_url) as conn:
        return conn.execute("SELECT status, attempt FROM runs_run WHERE run_id = %s", [run_id]).fetchone()


async def test_run_past_its_attempt_limit_ends_in_error_and_frees_the_thread(cluster: LiveServer, sdk) -> None:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    run = await sdk.runs.create(tid, "block", input={"items": ["block:60"]})
    for attempt in range(1, 4):  # RUN_MAX_ATTEMPTS is 3: every attempt's worker dies mid-run
        await wait_for(lambda attempt=attempt: run_row(cluster, run["run_id"]) == ("running", attempt), timeout=40)
        for victim in live_workers(cluster):  # whichever holds the run
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
        cluster.start_worker()
    result = await asyncio.wait_for(sdk.runs.join(tid, run["run_id"]), 60)
    assert result["__error__"]["error"] == "WorkerLost"
    assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "error"
    assert (await sdk.threads.get(tid))["status"] == "error"
    follow_up = await sdk.runs.wait(tid, "echo", input={"items": ["again"]})
    assert follow_up["items"][-1] == "echo:again"


async def test_a_worker_with_more_run_slots_than_database_connections_runs_them_all() -> None:
    """Eight runs at once on a worker of eight slots whose process may hold three database
    connections: a run in progress must not keep one checked out (its claim's) while its
    checkpoints wait for one, or the pool runs dry and the runs fail after its timeout."""
    live = LiveServer(mode="prod", extra_env={"DATABASE_POOL_MIN": "1", "DATABASE_POOL_MAX": "3"}).start()
    try:
        async with get_client(url=live.url, api_key=None) as client:
            threads = await asyncio.gather(*(client.threads.create() for _ in range(8)))
            runs = await asyncio.gather(
                *(client.runs.create(t["thread_id"], "slow", input={"items": ["sleep:0.3"]}) for t in threads)
            )
            results = await asyncio.wait_for(
                asyncio.gather(*(client.runs.join(r["thread_id"], r["run_id"]) for r in runs)), 25
            )
            statuses = {(await client.runs.get(r["thread_id"], r["run_id"]))["status"] for r in runs}
    finally:
        live.stop()
    assert results == [{"items": ["sleep:0.3", "s0", "s1", "s2", "s3", "s4"]}] * 8
    assert statuses == {"success"}
