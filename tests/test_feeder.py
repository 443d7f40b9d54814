"""How Celery workers take runs off the queue of ready runs (``runs.feeder``), and listen
for their cancel signals.

The recovery sweep is pushed out of reach (PENDING_REDISPATCH_SECONDS) so that a run can
only start because the queue still held it: a run lost by a worker would never start here.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import redis
from langgraph_sdk import get_client

from agentserver.events import KEY_PREFIX
from tests.live import LiveServer, wait_for

NO_SWEEP_RESCUE = {"AGENTSERVER_PENDING_REDISPATCH_SECONDS": "600"}


@pytest.fixture
def cluster() -> Iterator[LiveServer]:
    live = LiveServer(mode="prod", workers=0, extra_env=NO_SWEEP_RESCUE).start()
    yield live
    live.stop()


@pytest.fixture
async def sdk(cluster: LiveServer) -> AsyncIterator:
    async with get_client(url=cluster.url, api_key=None) as client:
        yield client


def statuses(cluster: LiveServer, run_ids: list[str]) -> list[str]:
    with psycopg.connect(cluster.database_url) as conn:
        rows = dict(conn.execute("SELECT run_id::text, status FROM runs_run WHERE run_id::text = ANY(%s)", [run_ids]))
    return [rows.get(run_id, "gone") for run_id in run_ids]



async def test_a_busy_worker_leaves_ready_runs_to_a_free_one(cluster: LiveServer, sdk) -> None:
    cluster.start_worker(concurrency=1)
    threads = [await sdk.threads.create() for _ in range(2)]
    first = await sdk.runs.create(threads[0]["thread_id"], "block", input={"items": ["block:4"]})
    await wait_for(lambda: statuses(cluster, [first["run_id"]]) == ["running"])
    second = await sdk.runs.create(threads[1]["thread_id"], "block", input={"items": ["block:4"]})
    cluster.start_worker(concurrency=1)
    # Both run at once, one on each worker: the busy first worker did not take the second.
    runs = [first, second]
    await wait_for(lambda: statuses(cluster, [r["run_id"] for r in runs]) == ["running", "running"])
    for thread, run in zip(threads, runs, strict=True):
        result = await asyncio.wait_for(sdk.runs.join(thread["thread_id"], run["run_id"]), 30)
        assert result["items"] == ["block:4", "unblocked"]


async def test_a_worker_stopped_gracefully_finishes_its_run_and_leaves_the_queued_ones(
    cluster: LiveServer, sdk
) -> None:
    worker = cluster.start_worker(concurrency=1)
    first, second = [await sdk.threads.create() for _ in range(2)]
    running = await sdk.runs.create(first["thread_id"], "block", input={"items": ["block:2"]})
    await wait_for(lambda: statuses(cluster, [running["run_id"]]) == ["running"])
    queued = await sdk.runs.create(second["thread_id"], "echo", input={"items": ["queued"]})
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert statuses(cluster, [running["run_id"], queued["run_id"]]) == ["success", "pending"]
    cluster.start_worker(concurrency=1)
    result = await asyncio.wait_for(sdk.runs.join(second["thread_id"], queued["run_id"]), 30)
    assert result == {"items": ["queued", "echo:queued"]}
    assert (await sdk.runs.get(first["thread_id"], running["run_id"]))["status"] == "success"


async def test_a_worker_whose_redis_connection_drops_goes_on_taking_runs(cluster: LiveServer, sdk) -> None:
    cluster.start_worker(concurrency=2)
    admin = redis.Redis.from_url(cluster.redis_url)

    def feeder_connections() -> list[int]:
        return [c["id"] for c in admin.client_list() if c.get("cmd") == "blmpop" and c["db"] == str(cluster.redis_db)]

    await wait_for(lambda: bool(feeder_connections()))
    for client_id in feeder_connections():
        admin.client_kill_filter(_id=client_id)
    thread = await sdk.threads.create()
    result = await asyncio.wait_for(sdk.runs.wait(thread["thread_id"], "echo", input={"items": ["after"]}), 30)
    assert result == {"items": ["after", "echo:after"]}



async def test_a_new_worker_listens_for_cancel_signals_before_its_first_run(cluster: LiveServer) -> None:
    """A run cancelled right after a new worker claimed it must get the signal: the worker is
    subscribed from its start, not from its first run (the signal would be lost, and the run
    would go on until its lease's heartbeat)."""
    admin = redis.Redis.from_url(cluster.redis_url)
    channel = f"{KEY_PREFIX}cancel:{uuid.uuid4()}"  # no run: nothing is cancelled
    # PUBLISH answers how many subscribers got the message (pub/sub spans every database,
    # so the other live servers' workers count too).
    before = admin.publish(channel, "interrupt")
    cluster.start_worker(concurrency=1)
    await wait_for(lambda: admin.publish(channel, "interrupt") == before + 1)
