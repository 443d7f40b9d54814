"""The worker threads behind DjangoCheckpointSaver's async methods.

A worker keeps its database connection from job to job and hands it back once no job has
come for a moment, so idle threads hold none; errors reach the awaiting caller.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.db import connections

from threads.checkpointer.workers import Workers

DATABASES = ["default", "sqlite"]

pytestmark = [
    pytest.mark.django_db(databases=DATABASES, transaction=True),
    pytest.mark.parametrize("alias", DATABASES),
]


def query(alias: str, pause: float = 0.0) -> tuple[str, Any, Any]:
    """Run a query; answer this thread's name, its Django connection and the driver's."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    time.sleep(pause)
    return threading.current_thread().name, connection, connection.connection


async def test_idle_worker_holds_no_connection(alias: str) -> None:
    workers = Workers(2, "idle-test")

    _, connection, driver = await workers.run(query, alias)

    assert driver is not None
    for _ in range(100):
        if connection.connection is None:
            break
        await asyncio.sleep(0.01)
    assert connection.connection is None


async def test_busy_worker_keeps_its_connection_between_queued_jobs(alias: str) -> None:
    workers = Workers(2, "busy-test")

    results = await asyncio.gather(*(workers.run(query, alias, 0.02) for _ in range(8)))

    drivers: dict[str, set[int]] = {}
    for thread, _, driver in results:
        drivers.setdefault(thread, set()).add(id(driver))
    assert len(drivers) == 2  # both threads worked
    assert sum(len(ids) for ids in drivers.values()) < len(results)  # and reused connections


async def test_worker_keeps_its_connection_between_jobs_a_few_milliseconds_apart(alias: str) -> None:
    """A run's checkpoint writes come one at a time, milliseconds apart: no checkout each."""
    workers = Workers(1, "hold-test")
    drivers = []  # kept alive: a new connection cannot reuse an id

    for _ in range(5):
        _, _, driver = await workers.run(query, alias)
        drivers.append(driver)
        await asyncio.sleep(0.005)

    assert len({id(driver) for driver in drivers}) == 1


async def test_worker_error_reaches_the_caller_and_the_worker_goes_on(alias: str) -> None:
    workers = Workers(1, "error-test")

    def fail() -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception, match="no_such_table"):
        await workers.run(fail)
    thread, _, _ = await workers.run(query, alias)
    assert thread == "error-test_0"


async def test_runs_jobs_concurrently_up_to_its_size(alias: str) -> None:
    workers = Workers(4, "size-test")
    started = time.perf_counter()

    results = await asyncio.gather(*(workers.run(query, alias, 0.2) for _ in range(8)))

    assert {thread for thread, _, _ in results} == {f"size-test_{i}" for i in range(4)}
    assert time.perf_counter() - started < 8 * 0.2 * 0.75
