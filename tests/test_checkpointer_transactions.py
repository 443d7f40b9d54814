"""DjangoCheckpointSaver's write transactions: all of a put (and of its guard) or nothing.

On Postgres a write transaction's statements travel in one pipeline (a lone one by itself)
and commit with the sync, and a subclass's guard runs inside the same transaction; these
tests hold that to the "one transaction per put, the hook entered before any write"
contract on both databases.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connections, transaction
from django.test.utils import CaptureQueriesContext
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata

from threads.checkpointer import DjangoCheckpointSaver, sql
from threads.checkpointer.transaction import write_transaction
from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite

DATABASES = ["default", "sqlite"]

pytestmark = [
    pytest.mark.django_db(databases=DATABASES, transaction=True),
    pytest.mark.parametrize("alias", DATABASES),
]


class Refused(Exception):
    pass


class GuardedSaver(DjangoCheckpointSaver):
    """Marks a row and reads it back inside the write transaction, before any write, as
    the run executor's lease check does; refuses the write when told to."""

    def __init__(self, alias: str, marker: int, *, refuse: bool = False) -> None:
        super().__init__(alias)
        self.marker, self.refuse = marker, refuse
        self.updated: list[int] = []
        self.read: list[str] = []

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        with super().write_transaction():
            rows = CheckpointWrite.objects.using(self.using).filter(pk=self.marker)
            self.updated.append(rows.update(task_path="guarded"))
            with connections[self.using].cursor() as cursor:
                cursor.execute("SELECT task_path FROM threads_checkpointwrite WHERE id = %s", [self.marker])
                self.read.append(cursor.fetchone()[0])
            if self.refuse:
                raise Refused
            yield


class RollingBackSaver(DjangoCheckpointSaver):
    """Marks its transaction for rollback after the writes, without raising."""

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        with super().write_transaction():
            yield
            transaction.set_rollback(True, using=self.using)


class CheckingAfterwardsSaver(DjangoCheckpointSaver):
    """Runs its statement after the writes, then refuses them."""

    def __init__(self, alias: str, marker: int) -> None:
        super().__init__(alias)
        self.marker = marker

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        with super().write_transaction():
            yield
            CheckpointWrite.objects.using(self.using).filter(pk=self.marker).update(task_path="late")
            raise Refused


def marker_row(alias: str) -> int:
    row = CheckpointWrite.objects.using(alias).create(
        thread_id="marker", checkpoint_id="1", task_id="t", idx=0, channel="c", type="null", blob=b""
    )
    return row.pk


def marker_path(alias: str, pk: int) -> str:
    return CheckpointWrite.objects.using(alias).get(pk=pk).task_path


def put(
    saver: DjangoCheckpointSaver, thread_id: str, values: dict[str, Any], **checkpoint_extra: Any
) -> RunnableConfig:
    versions: dict[str, str | int | float] = {channel: "1" for channel in values}
    checkpoint = {**generate_checkpoint(channel_values=values, channel_versions=versions), **checkpoint_extra}
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return saver.put(config, checkpoint, generate_metadata(), versions)  # type: ignore[arg-type]


def stored(alias: str, thread_id: str) -> tuple[int, int]:
    """(checkpoints, blobs) of the thread."""
    return (
        Checkpoint.objects.using(alias).filter(thread_id=thread_id).count(),
        CheckpointBlob.objects.using(alias).filter(thread_id=thread_id).count(),
    )


def test_guard_sees_its_own_results_before_the_writes(alias: str) -> None:
    saver = GuardedSaver(alias, marker_row(alias))
    thread_id = str(uuid.uuid4())

    config = put(saver, thread_id, {"a": [1]})
    saver.put_writes(config, [("a", [2])], task_id="task")

    assert saver.updated == [1, 1] and saver.read == ["guarded", "guarded"]
    assert stored(alias, thread_id) == (1, 1)
    tuple_ = saver.get_tuple(config)
    assert tuple_ is not None and tuple_.pending_writes == [("task", "a", [2])]


def test_refusing_guard_writes_nothing_and_undoes_its_own_changes(alias: str) -> None:
    marker = marker_row(alias)
    saver = GuardedSaver(alias, marker, refuse=True)
    thread_id = str(uuid.uuid4())

    with pytest.raises(Refused):
        put(saver, thread_id, {"a": [1]})

    assert stored(alias, thread_id) == (0, 0)
    assert marker_path(alias, marker) == ""


def test_guard_running_after_the_writes_can_still_refuse_them(alias: str) -> None:
    marker = marker_row(alias)
    saver = CheckingAfterwardsSaver(alias, marker)
    thread_id = str(uuid.uuid4())

    with pytest.raises(Refused):
        put(saver, thread_id, {"a": [1]})

    assert stored(alias, thread_id) == (0, 0)
    assert marker_path(alias, marker) == ""


def test_transaction_marked_for_rollback_keeps_nothing(alias: str) -> None:
    saver = RollingBackSaver(alias)
    thread_id = str(uuid.uuid4())

    put(saver, thread_id, {"a": [1]})

    assert stored(alias, thread_id) == (0, 0)


@pytest.mark.parametrize("guarded", [False, True])
def test_error_after_the_writes_are_sent_commits_none_of_them(
    alias: str, guarded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = marker_row(alias)
    saver = GuardedSaver(alias, marker) if guarded else DjangoCheckpointSaver(alias)
    thread_id = str(uuid.uuid4())
    send = sql.execute

    def send_then_fail(*args: Any) -> None:
        send(*args)
        raise RuntimeError("after the writes")

    monkeypatch.setattr(sql, "execute", send_then_fail)
    with pytest.raises(RuntimeError):
        put(saver, thread_id, {"a": [1], "b": [2]})

    assert stored(alias, thread_id) == (0, 0)
    assert marker_path(alias, marker) == ""


def test_a_statement_failing_as_it_is_sent_undoes_those_sent_before_it(alias: str) -> None:
    """The driver refuses a value of the second statement (it cannot adapt it) after the
    first went out: the transaction keeps neither."""
    thread_id = str(uuid.uuid4())
    first = (
        "INSERT INTO threads_checkpointwrite (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, "
        "idx, channel, type, blob) VALUES (%s, '', '1', 't', '', 0, 'c', 'null', %s)",
        [thread_id, b""],
    )
    with pytest.raises(Exception, match="adapt|bind|type"):
        with write_transaction(alias, guarded=False):
            sql.execute(alias, [first, ("SELECT %s", [object()])])

    assert not CheckpointWrite.objects.using(alias).filter(thread_id=thread_id).exists()
    sql.execute(alias, [first])  # the connection is usable again
    assert CheckpointWrite.objects.using(alias).filter(thread_id=thread_id).count() == 1


def test_a_steps_writes_queued_with_the_next_checkpoint_are_stored_together(alias: str) -> None:
    """As the Pregel loop queues them: a task's writes and the next checkpoint, one
    transaction (on Postgres one statement); both are read back."""
    saver = DjangoCheckpointSaver(alias)
    thread_id = str(uuid.uuid4())
    parent = put(saver, thread_id, {"a": [0]})
    task, _ = saver._writes_batch(parent, [("a", [1]), ("__error__", "boom")], "task-1", "")
    versions: dict[str, str | int | float] = {"a": "2"}
    checkpoint = generate_checkpoint(channel_values={"a": [0, 1]}, channel_versions=versions)
    put_next, saved = saver._put_batch(parent, checkpoint, generate_metadata(), versions)  # type: ignore[arg-type]
    batch = [*task, *put_next]
    per_vendor = 1 if connections[alias].vendor == "postgresql" else 4  # writes, upsert, blob, row
    assert len(saver.statements.transaction(batch, None)) == per_vendor

    saver._write(batch)

    written = saver.get_tuple(parent)
    assert sorted(channel for _, channel, _ in written.pending_writes or ()) == ["__error__", "a"]
    latest = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    assert latest.config == saved and latest.checkpoint["channel_values"] == {"a": [0, 1]}


def test_one_tasks_writes_queued_twice_are_written_in_turn(alias: str) -> None:
    """The same task's special write queued twice in one transaction: one statement could
    not upsert its row twice, so each goes alone and the later one wins, as in turn."""
    saver = DjangoCheckpointSaver(alias)
    parent = put(saver, str(uuid.uuid4()), {"a": [0]})
    first, _ = saver._writes_batch(parent, [("__error__", "first")], "task-1", "")
    second, _ = saver._writes_batch(parent, [("__error__", "second")], "task-1", "")

    saver._write([*first, *second])

    written = saver.get_tuple(parent)
    assert [(channel, value) for _, channel, value in written.pending_writes or ()] == [("__error__", "second")]


@pytest.mark.parametrize("guarded", [False, True])
def test_write_rejected_by_postgres_rolls_back_the_whole_put(alias: str, guarded: bool) -> None:
    if connections[alias].vendor != "postgresql":
        pytest.skip("SQLite stores NUL characters in JSON")
    marker = marker_row(alias)
    saver = GuardedSaver(alias, marker) if guarded else DjangoCheckpointSaver(alias)
    thread_id = str(uuid.uuid4())

    # The blobs go first and succeed; JSONB then rejects the checkpoint row.
    with pytest.raises(DatabaseError):
        put(saver, thread_id, {"a": [1]}, versions_seen={"node\x00": {}})

    assert stored(alias, thread_id) == (0, 0)
    assert marker_path(alias, marker) == ""
    put(saver, thread_id, {"a": [1]})  # the connection is usable again
    assert stored(alias, thread_id) == (1, 1)


def test_put_writes_without_writes_sends_nothing(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    config = put(saver, str(uuid.uuid4()), {})

    with CaptureQueriesContext(connections[alias]) as queries:
        saver.put_writes(config, [], task_id="task")

    assert len(queries) == 0


def test_stores_more_writes_than_one_statement_holds(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    config = put(saver, str(uuid.uuid4()), {"a": []})
    writes = [(f"channel-{i}", i) for i in range(2 * sql.ROWS_PER_INSERT + 5)]

    saver.put_writes(config, [*writes, ("__error__", "boom")], task_id="task")

    tuple_ = saver.get_tuple(config)
    assert tuple_ is not None
    assert tuple_.pending_writes == [("task", "__error__", "boom")] + [("task", c, v) for c, v in writes]


def test_retried_writes_keep_regular_values_and_replace_special_ones(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    config = put(saver, str(uuid.uuid4()), {"a": []})

    saver.put_writes(config, [("a", "first"), ("__error__", "first")], task_id="task")
    saver.put_writes(config, [("a", "second"), ("__error__", "second")], task_id="task")

    tuple_ = saver.get_tuple(config)
    assert tuple_ is not None
    assert sorted(tuple_.pending_writes or []) == [("task", "__error__", "second"), ("task", "a", "first")]


def test_saving_a_checkpoint_again_replaces_its_metadata(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    checkpoint = generate_checkpoint(channel_values={"a": 1}, channel_versions={"a": "1"})
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}

    saver.put(config, checkpoint, generate_metadata(step=1), {"a": "1"})
    stored_config = saver.put(config, checkpoint, generate_metadata(step=2), {"a": "1"})

    tuple_ = saver.get_tuple(stored_config)
    assert tuple_ is not None and tuple_.metadata["step"] == 2
    assert tuple_.checkpoint["channel_values"] == {"a": 1}
