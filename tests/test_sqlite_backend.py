"""agentserver.sqlite: the writers of one process queue on a lock of their own.

What these hold: writes from many threads at once all land, and whatever way a writer
ends (commit, rollback, a failed statement, a closed connection) the next one gets in.
A lock left held would show as the next writer's "database is locked" after its (here
shortened) wait.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction

from agentserver.sqlite.base import to_qmark
from threads.models import CheckpointBlob, Thread

ALIAS = "sqlite"
pytestmark = pytest.mark.django_db(databases=["default", ALIAS], transaction=True)


def in_thread(fn: Callable[[], Any], *, lock_timeout: float = 2.0) -> Any:
    """``fn()`` on a thread of its own (its own connection), its result or its error."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        connections[ALIAS].lock_timeout = lock_timeout
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the writer never finished"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def create_thread(thread_id: uuid.UUID | None = None) -> Thread:
    return Thread.objects.using(ALIAS).create(thread_id=thread_id or uuid.uuid4())


def test_writers_on_many_threads_all_land() -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer() -> None:
        try:
            start.wait()
            for index in range(15):
                if index % 2:
                    create_thread()  # outside any transaction
                else:
                    with transaction.atomic(using=ALIAS):
                        thread = create_thread()
                        Thread.objects.using(ALIAS).filter(pk=thread.pk).update(metadata={"n": index})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=writer) for _ in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    assert errors == []
    assert Thread.objects.using(ALIAS).count() == 8 * 15
    assert Thread.objects.using(ALIAS).filter(metadata__n=14).count() == 8


def test_a_rolled_back_transaction_lets_the_next_writer_in() -> None:
    def fails() -> None:
        with transaction.atomic(using=ALIAS):
            create_thread()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        in_thread(fails)
    in_thread(create_thread, lock_timeout=0.5)
    assert Thread.objects.using(ALIAS).count() == 1


def test_a_failed_write_outside_a_transaction_lets_the_next_writer_in() -> None:
    taken = uuid.uuid4()
    in_thread(lambda: create_thread(taken))
    with pytest.raises(IntegrityError):
        in_thread(lambda: create_thread(taken))
    in_thread(create_thread, lock_timeout=0.5)
    assert Thread.objects.using(ALIAS).count() == 2


def test_a_raw_write_transaction_commits_or_rolls_back_and_lets_the_next_writer_in() -> None:
    """The event loop's write path (runs.lease): its statements land together or not at all,
    its failures are Django's errors, and it gives the lock back either way."""
    table = CheckpointBlob._meta.db_table
    insert = f"INSERT INTO {table} (thread_id, checkpoint_ns, channel, version, type) VALUES (%s, '', 'c', '1', 'empty')"
    taken = uuid.uuid4().hex

    def writes(*thread_ids: str) -> None:
        connections[ALIAS].ensure_connection()
        with connections[ALIAS].raw_write_transaction() as raw:
            for thread_id in thread_ids:
                raw.execute(to_qmark(insert), [thread_id])

    in_thread(lambda: writes(taken, uuid.uuid4().hex))
    with pytest.raises(IntegrityError):
        in_thread(lambda: writes(uuid.uuid4().hex, taken))  # the second fails: the first is undone
    assert CheckpointBlob.objects.using(ALIAS).count() == 2
    in_thread(create_thread, lock_timeout=0.5)
    assert Thread.objects.using(ALIAS).count() == 1


def test_a_connection_closed_inside_a_transaction_lets_the_next_writer_in() -> None:
    def abandons() -> None:
        atomic = transaction.atomic(using=ALIAS)
        atomic.__enter__()
        create_thread()
        connections[ALIAS].close()  # e.g. a thread cleaning up after an error

    in_thread(abandons)
    in_thread(create_thread, lock_timeout=0.5)
    assert Thread.objects.using(ALIAS).count() == 1  # the abandoned insert is gone


def test_a_write_waits_for_another_threads_transaction_then_both_land() -> None:
    inside, release = threading.Event(), threading.Event()
    written = threading.Event()

    def holds() -> None:
        with transaction.atomic(using=ALIAS):
            create_thread()
            inside.set()
            release.wait(timeout=10)

    def writes() -> None:
        inside.wait(timeout=10)
        create_thread()
        written.set()

    holder = threading.Thread(target=in_thread, args=(holds,))
    holder.start()
    assert inside.wait(timeout=10)
    writer = threading.Thread(target=in_thread, args=(writes,), kwargs={"lock_timeout": 10})
    writer.start()
    assert not written.wait(timeout=0.3)  # still behind the open transaction
    release.set()
    holder.join(timeout=10)
    writer.join(timeout=10)
    assert written.is_set()
    assert Thread.objects.using(ALIAS).count() == 2


def test_a_writer_stuck_behind_a_transaction_fails_as_sqlite_would() -> None:
    inside, release = threading.Event(), threading.Event()

    def holds() -> None:
        with transaction.atomic(using=ALIAS):
            create_thread()
            inside.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=in_thread, args=(holds,))
    holder.start()
    try:
        assert inside.wait(timeout=10)
        with pytest.raises(OperationalError, match="database is locked"):
            in_thread(create_thread, lock_timeout=0.2)
    finally:
        release.set()
        holder.join(timeout=10)
    assert Thread.objects.using(ALIAS).count() == 1
