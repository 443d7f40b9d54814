"""A backlog of pending runs does not slow each run down (Postgres).

Admission's in-flight check, the claim and the next-run lookup each read only their own
thread's runs, also when the planner's statistics were taken before the backlog (it then
thinks the in-flight index empty): otherwise each of them reads the whole backlog, and
draining N queued runs costs O(N²).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from runs import lease
from runs.models import Run, RunStatus
from runs.queue import next_queued_run
from runs.services import _admission_sql
from threads.models import Thread, ThreadStatus

pytestmark = pytest.mark.django_db(transaction=True)

BACKLOG = 400


def pending_run(thread: Thread, created_at: Any) -> Run:
    return Run(thread=thread, assistant_id=uuid.uuid4(), status=RunStatus.PENDING, created_at=created_at)


@pytest.fixture
def backlog() -> Run:
    """One pending run to claim, after statistics taken when nothing was pending, and then
    ``BACKLOG`` runs pending on other threads."""
    earlier = timezone.now() - timedelta(minutes=1)
    done = Thread.objects.create()
    Run.objects.bulk_create(
        [Run(thread=done, assistant_id=uuid.uuid4(), status=RunStatus.SUCCESS, created_at=earlier) for _ in range(200)]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Run._meta.db_table}")
    threads = Thread.objects.bulk_create([Thread(status=ThreadStatus.BUSY) for _ in range(BACKLOG + 1)])
    runs = Run.objects.bulk_create([pending_run(thread, earlier) for thread in threads])
    return runs[0]


def most_rows_read(sql: str, params: Any) -> int:
    """The most rows any node of the statement's plan read (kept or filtered out), running it
    in a transaction that is rolled back."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]  # psycopg parses the json column
        transaction.set_rollback(True)
    return max(_rows_read(plan[0]["Plan"]))


def _rows_read(node: dict) -> Iterator[int]:
    yield node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Join Filter", 0)
    for child in node.get("Plans", []):
        yield from _rows_read(child)


def captured(function: Any, *args: Any) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(capture):
        function(*args)
        transaction.set_rollback(True)
    return statements


def test_the_claim_reads_only_its_own_threads_runs(backlog: Run) -> None:
    [(sql, params)] = captured(lease.claim_run, str(backlog.run_id))
    assert most_rows_read(sql, params) <= 2


def test_admissions_in_flight_check_reads_only_its_own_threads_runs(backlog: Run) -> None:
    in_flight = _admission_sql(connection.vendor)[1]
    assert most_rows_read(in_flight, [backlog.thread_id]) <= 2


def test_the_next_run_lookup_reads_only_its_own_threads_runs(backlog: Run) -> None:
    [(sql, params)] = captured(next_queued_run, backlog.thread_id)
    assert most_rows_read(sql, params) <= 2
