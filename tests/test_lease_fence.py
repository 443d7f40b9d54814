"""The lease fence of checkpoint writes (runs/lease.py): an attempt writes only while it owns
the run; a stale attempt's put and put_writes raise LeaseLost and store nothing."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata

from runs.lease import FencedCheckpointSaver, LeaseLost
from runs.models import Run, RunStatus
from threads.models import Checkpoint, CheckpointWrite, Thread

DATABASES = ["default", "sqlite"]

pytestmark = [
    pytest.mark.django_db(databases=DATABASES, transaction=True),
    pytest.mark.parametrize("alias", DATABASES),
]


def running_run(alias: str) -> Run:
    thread = Thread.objects.using(alias).create()
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


def stored(alias: str, thread_id: str) -> tuple[int, int]:
    return (
        Checkpoint.objects.using(alias).filter(thread_id=thread_id).count(),
        CheckpointWrite.objects.using(alias).filter(thread_id=thread_id).count(),
    )


def test_the_lease_holder_writes(alias: str) -> None:
    run = running_run(alias)
    write_step(FencedCheckpointSaver(str(run.run_id), run.lease_token, alias), str(run.thread_id))
    assert stored(alias, str(run.thread_id)) == (1, 1)


def test_an_attempt_whose_lease_was_taken_over_writes_nothing(alias: str) -> None:
    run = running_run(alias)
    stale = FencedCheckpointSaver(str(run.run_id), run.lease_token, alias)
    Run.objects.using(alias).filter(pk=run.pk).update(lease_token=uuid.uuid4(), attempt=2)  # a takeover
    with pytest.raises(LeaseLost):
        write_step(stale, str(run.thread_id))
    assert stored(alias, str(run.thread_id)) == (0, 0)


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
    assert stored(alias, str(run.thread_id)) == (1, 1)
