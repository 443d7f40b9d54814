"""Leases (runs/lease.py): an attempt writes checkpoints only while it owns the run (a stale
attempt's put and put_writes raise LeaseLost and store nothing), its finish writes the run and
its thread only then, and the process's lease keeper renews the attempt that owns it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata

from runs.executor import finish_run
from runs.lease import FencedCheckpointSaver, LeaseKeeper, LeaseLost
from runs.models import Run, RunStatus
from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite, Thread, ThreadStatus

DATABASES = ["default", "sqlite", "pooled"]

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)
on_both = pytest.mark.parametrize("alias", DATABASES)  # "pooled": the server's Postgres setup


@pytest.fixture(scope="module", autouse=True)
def close_the_pool() -> Iterator[None]:
    """Connections left in the pool would keep the test database from being dropped."""
    yield
    connections["pooled"].close_pool()


def running_run(alias: str) -> Run:
    thread = Thread.objects.using(alias).create(status=ThreadStatus.BUSY)
    return Run.objects.using(alias).create(
        thread=thread, assistant_id=uuid.uuid4(), status=RunStatus.RUNNING, created_at=timezone.now(),
        attempt=1, lease_token=uuid.uuid4(),
    )


def write_step(saver: FencedCheckpointSaver, thread_id: str) -> None:
    """What the Pregel loop writes for a step: a task's writes, then the next checkpoint."""
    versions = {"items": "1"}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions=versions)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    saved = saver.put(config, checkpoint, generate_metadata(), versions)  # type: ignore[arg-type]
    saver.put_writes(saved, [("items", ["b"])], task_id="task-1")


def stored(alias: str, thread_id: str) -> tuple[int, int, int]:
    """Checkpoints, blobs and writes of the thread."""
    return (
        Checkpoint.objects.using(alias).filter(thread_id=thread_id).count(),
        CheckpointBlob.objects.using(alias).filter(thread_id=thread_id).count(),
        CheckpointWrite.objects.using(alias).filter(thread_id=thread_id).count(),
    )


@on_both
def test_the_lease_holder_writes(alias: str) -> None:
    run = running_run(alias)
    write_step(FencedCheckpointSaver(str(run.run_id), run.lease_token, alias), str(run.thread_id))
    assert stored(alias, str(run.thread_id)) == (1, 1, 1)


@on_both
def test_an_attempt_whose_lease_was_taken_over_writes_nothing(alias: str) -> None:
    run = running_run(alias)
    stale = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    Run.objects.using(alias).filter(pk=run.pk).update(lease_token=uuid.uuid4(), attempt=2)  # a takeover
    with pytest.raises(LeaseLost):
        write_step(stale, str(run.thread_id))
    assert stored(alias, str(run.thread_id)) == (0, 0, 0)


@on_both
def test_an_attempt_of_a_finished_run_writes_nothing(alias: str) -> None:
    run = running_run(alias)
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    write_step(saver, str(run.thread_id))
    Run.objects.using(alias).filter(pk=run.pk).update(status=RunStatus.SUCCESS)
    with pytest.raises(LeaseLost):
        saver.put_writes(
            {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": "", "checkpoint_id": "late"}},
            [("items", ["late"])], task_id="task-2",
        )
    assert stored(alias, str(run.thread_id)) == (1, 1, 1)


@on_both
def test_the_lease_holders_async_writes_are_stored(alias: str) -> None:
    """As the executor writes: a step's writes and checkpoint at once, from the attempt's loop."""
    run = running_run(alias)
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    config = {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions={"items": "1"})
    written = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}

    async def step() -> None:
        await asyncio.gather(
            saver.aput(config, checkpoint, generate_metadata(), {"items": "1"}),  # type: ignore[arg-type]
            saver.aput_writes(written, [("items", ["b"])], task_id="task-1"),  # type: ignore[arg-type]
        )

    asyncio.run(step())
    assert stored(alias, str(run.thread_id)) == (1, 1, 1)
    assert saver.get_tuple(config).pending_writes == [("task-1", "items", ["b"])]


@pytest.mark.parametrize("alias", ["pooled", "sqlite"])
def test_an_attempts_writes_take_no_worker_thread(alias: str, monkeypatch) -> None:
    """The executor's loop serves one attempt: its writes go from there, on a pooled Postgres
    connection or on the SQLite connection its thread claimed the run with."""
    run = running_run(alias)
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    monkeypatch.setattr(FencedCheckpointSaver, "_workers", lambda *_: pytest.fail("a write went to a worker thread"))
    config = {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions={"items": "1"})
    asyncio.run(saver.aput(config, checkpoint, generate_metadata(), {"items": "1"}))  # type: ignore[arg-type]
    assert stored(alias, str(run.thread_id)) == (1, 1, 0)


def test_on_sqlite_a_loop_of_another_thread_writes_through_the_worker_thread(monkeypatch) -> None:
    """A thread's SQLite connection is its own (Django lets other threads reach it, without
    guarding it): a loop elsewhere hands its writes to the checkpointer's thread."""
    run = running_run("sqlite")
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, "sqlite")
    monkeypatch.setattr(saver, "_write_on_own_connection", lambda _: pytest.fail("another thread's connection used"))
    config = {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions={"items": "1"})
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            asyncio.run(saver.aput(config, checkpoint, generate_metadata(), {"items": "1"}))  # type: ignore[arg-type]
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    other = threading.Thread(target=elsewhere)
    other.start()
    other.join(timeout=30)
    assert errors == []
    assert stored("sqlite", str(run.thread_id)) == (1, 1, 0)


def test_on_sqlite_a_loop_whose_thread_closed_its_connection_writes_through_the_worker_thread() -> None:
    """No connection to borrow (the ORM may not open one in a loop's thread): the worker writes."""
    run = running_run("sqlite")
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, "sqlite")
    connections["sqlite"].close()
    config = {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions={"items": "1"})
    asyncio.run(saver.aput(config, checkpoint, generate_metadata(), {"items": "1"}))  # type: ignore[arg-type]
    assert stored("sqlite", str(run.thread_id)) == (1, 1, 0)


@on_both
def test_concurrent_async_writes_of_an_attempt_whose_lease_was_taken_over_all_fail(alias: str) -> None:
    """As the executor writes: a step's writes and checkpoint at once, queued together."""
    run = running_run(alias)
    stale = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    Run.objects.using(alias).filter(pk=run.pk).update(lease_token=uuid.uuid4(), attempt=2)  # a takeover
    config = {"configurable": {"thread_id": str(run.thread_id), "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"items": ["a"]}, channel_versions={"items": "1"})
    written = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}

    async def step() -> list[Any]:
        return await asyncio.gather(
            stale.aput(config, checkpoint, generate_metadata(), {"items": "1"}),  # type: ignore[arg-type]
            stale.aput_writes(written, [("items", ["b"])], task_id="task-1"),  # type: ignore[arg-type]
            return_exceptions=True,
        )

    assert [type(result) for result in asyncio.run(step())] == [LeaseLost, LeaseLost]
    assert stored(alias, str(run.thread_id)) == (0, 0, 0)


def finish(run: Run) -> str | None:
    values = {"items": ["done"]}
    fields = {"status": ThreadStatus.IDLE, "error": None, "values": values, "interrupts": {}}
    return finish_run(run, RunStatus.SUCCESS, output=values, error=None, thread_fields=fields)


def test_the_lease_holder_finishes_its_run_and_frees_the_thread() -> None:
    run = running_run("default")
    assert finish(run) == ThreadStatus.IDLE
    run.refresh_from_db()
    thread = Thread.objects.get(pk=run.thread_id)
    assert (run.status, run.output, run.lease_expires_at) == (RunStatus.SUCCESS, {"items": ["done"]}, None)
    assert (thread.status, thread.values) == (ThreadStatus.IDLE, {"items": ["done"]})


def test_a_finish_leaves_the_thread_busy_while_another_run_waits() -> None:
    run = running_run("default")
    Run.objects.create(
        thread_id=run.thread_id, assistant_id=uuid.uuid4(), status=RunStatus.PENDING, created_at=timezone.now()
    )
    assert finish(run) == ThreadStatus.BUSY
    assert Thread.objects.get(pk=run.thread_id).status == ThreadStatus.BUSY
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCESS


def test_the_finish_of_an_attempt_whose_lease_was_taken_over_writes_nothing() -> None:
    run = running_run("default")
    Run.objects.filter(pk=run.pk).update(lease_token=uuid.uuid4(), attempt=2)  # a takeover
    assert finish(run) is None
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    thread = Thread.objects.get(pk=run.thread_id)
    assert (thread.status, thread.values) == (ThreadStatus.BUSY, None)


def test_keeper_keeps_renewing_an_attempt_that_took_over_in_the_same_process(settings) -> None:
    """The replaced attempt ends after the takeover: releasing it must not let go of the new one."""
    settings.AGENT_SERVER = {"HEARTBEAT_SECONDS": 0.05, "LEASE_SECONDS": 30.0}
    run = running_run("default")
    keeper, verdicts = LeaseKeeper(), []
    keeper.hold(str(run.run_id), run.lease_token, verdicts.append)
    takeover = uuid.uuid4()
    Run.objects.filter(pk=run.pk).update(lease_token=takeover, attempt=2, lease_expires_at=timezone.now())
    keeper.hold(str(run.run_id), takeover, verdicts.append)
    keeper.release(run.lease_token)
    deadline = time.monotonic() + 10
    while Run.objects.get(pk=run.pk).lease_expires_at <= timezone.now() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Run.objects.get(pk=run.pk).lease_expires_at > timezone.now()
    assert verdicts == []
    keeper.release(takeover)


@on_both
def test_a_read_ahead_answers_the_first_read_only(alias: str) -> None:
    """The executor reads the thread's checkpoint as it claims the run; the graph's first read
    takes that answer, every later read (or a first one for another namespace) the database's."""
    run = running_run(alias)
    thread_id = str(run.thread_id)
    saver = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    subgraph = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "sub"}}

    def checkpoint_ids(*reads: dict) -> list[str | None]:
        async def read_all() -> list[Any]:
            return [await saver.aget_tuple(read) for read in reads]

        return [found and found.checkpoint["id"] for found in asyncio.run(read_all())]

    write_step(saver, thread_id)
    first = saver.get_tuple(config).checkpoint["id"]
    saver.read_ahead(config)
    write_step(saver, thread_id)  # only a read from the database sees this one
    second = saver.get_tuple(config).checkpoint["id"]
    assert checkpoint_ids(config, config) == [first, second]

    saver.read_ahead(config)
    write_step(saver, thread_id)
    third = saver.get_tuple(config).checkpoint["id"]
    assert checkpoint_ids(subgraph, config) == [None, third]
