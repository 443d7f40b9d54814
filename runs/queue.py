"""A thread's queue of runs: which run goes next, and the thread's status between runs."""

from __future__ import annotations

import uuid

from django.db import connections
from django.utils import timezone

from runs.models import ACTIVE_RUN_STATUSES, Run
from runs.sql import db_value
from threads.models import Thread, ThreadStatus
from threads.state import refresh_thread_from_checkpoint


def lock_threads(thread_ids: list[uuid.UUID]) -> None:
    """Take the thread row locks first, in id order, in every transaction that writes both
    threads and runs: admission does, so any other order deadlocks against it."""
    list(Thread.objects.select_for_update().filter(pk__in=thread_ids).order_by("pk").values_list("pk", flat=True))


def next_queued_run(thread_id: uuid.UUID) -> list[str]:
    """The thread's oldest queued run whose start time has come (FIFO by ``created_at``).

    Plain SQL: it runs after every run, and the ORM would compile it every time."""
    using = Run.objects.db
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT run_id FROM {Run._meta.db_table} WHERE thread_id = %s AND status = 'pending' "
            "AND created_at <= %s ORDER BY created_at LIMIT 1",
            [db_value("thread_id", thread_id, connection), db_value("created_at", timezone.now(), connection)],
        )
        row = cursor.fetchone()
    return [str(uuid.UUID(str(row[0])))] if row else []


def release_thread(thread_id: uuid.UUID) -> None:
    """After runs vanished or were cancelled before starting: busy while others are in
    flight, else the status its latest checkpoint implies (idle or interrupted)."""
    if Run.objects.filter(thread_id=thread_id, status__in=ACTIVE_RUN_STATUSES).exists():
        Thread.objects.filter(pk=thread_id).update(status=ThreadStatus.BUSY, updated_at=timezone.now())
    elif refresh_thread_from_checkpoint(thread_id) is None:
        Thread.objects.filter(pk=thread_id).update(status=ThreadStatus.IDLE, updated_at=timezone.now())
