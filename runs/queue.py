"""A thread's queue of runs: which run goes next, and the thread's status between runs."""

from __future__ import annotations

import uuid

from django.utils import timezone

from runs.models import ACTIVE_RUN_STATUSES, Run, RunStatus
from threads.models import Thread, ThreadStatus
from threads.state import refresh_thread_from_checkpoint


def lock_threads(thread_ids: list[uuid.UUID]) -> None:
    """Take the thread row locks first, in id order, in every transaction that writes both
    threads and runs: admission does, so any other order deadlocks against it."""
    list(Thread.objects.select_for_update().filter(pk__in=thread_ids).order_by("pk").values_list("pk", flat=True))


def next_queued_run(thread_id: uuid.UUID) -> list[str]:
    """The thread's oldest queued run whose start time has come (FIFO by ``created_at``)."""
    run_id = (
        Run.objects.filter(thread_id=thread_id, status=RunStatus.PENDING, created_at__lte=timezone.now())
        .order_by("created_at")
        .values_list("run_id", flat=True)
        .first()
    )
    return [str(run_id)] if run_id else []


def release_thread(thread_id: uuid.UUID) -> None:
    """After runs vanished or were cancelled before starting: busy while others are in
    flight, else the status its latest checkpoint implies (idle or interrupted)."""
    if Run.objects.filter(thread_id=thread_id, status__in=ACTIVE_RUN_STATUSES).exists():
        Thread.objects.filter(pk=thread_id).update(status=ThreadStatus.BUSY, updated_at=timezone.now())
    elif refresh_thread_from_checkpoint(thread_id) is None:
        Thread.objects.filter(pk=thread_id).update(status=ThreadStatus.IDLE, updated_at=timezone.now())
