"""The thread tally (``ThreadTally``, migration 0004): the total of an unfiltered
``threads.search`` / ``threads.count`` is kept by triggers, so it costs the same with ten
threads or ten million, and it stays exact however threads come and go."""

from __future__ import annotations

import importlib
import threading

import pytest
from django.db import connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from threads import services
from threads.models import Thread, ThreadTally

DATABASES = ["default", "sqlite"]
pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)
on_both = pytest.mark.parametrize("alias", DATABASES)
migration = importlib.import_module("threads.migrations.0004_thread_tally")


def tally(alias: str) -> int:
    return ThreadTally.objects.using(alias).aggregate(total=Sum("threads"))["total"] or 0


def real_count(alias: str) -> int:
    return Thread.objects.using(alias).count()


@on_both
def test_the_tally_follows_inserts_and_deletes(alias: str) -> None:
    threads = Thread.objects.using(alias)
    threads.create()
    threads.bulk_create([Thread() for _ in range(7)])  # one statement, seven rows
    assert tally(alias) == real_count(alias) == 8
    threads.filter(pk__in=list(threads.values_list("pk", flat=True)[:5])).delete()
    threads.filter(pk__in=[]).delete()  # deletes nothing
    assert tally(alias) == real_count(alias) == 3


@on_both
def test_the_tally_is_exact_with_writers_on_many_connections(alias: str) -> None:
    def writer() -> None:
        try:
            for _ in range(15):
                Thread.objects.using(alias).create()
            Thread.objects.using(alias).bulk_create([Thread() for _ in range(5)])
        finally:
            connections[alias].close()

    writers = [threading.Thread(target=writer) for _ in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert tally(alias) == real_count(alias) == 120


def test_emptying_both_tables_in_either_order_leaves_a_zero_total_on_sqlite() -> None:
    """What Django's flush does on SQLite, a DELETE per table in its own order. (On
    Postgres it truncates both tables at once, which fires no trigger.)"""
    alias = "sqlite"
    Thread.objects.using(alias).bulk_create([Thread() for _ in range(3)])
    ThreadTally.objects.using(alias).all().delete()
    Thread.objects.using(alias).all().delete()
    assert tally(alias) == real_count(alias) == 0
    Thread.objects.using(alias).bulk_create([Thread() for _ in range(2)])
    assert tally(alias) == 2
    Thread.objects.using(alias).all().delete()
    ThreadTally.objects.using(alias).all().delete()
    Thread.objects.using(alias).create()
    assert tally(alias) == real_count(alias) == 1


def test_truncating_the_threads_empties_the_tally_on_postgres() -> None:
    Thread.objects.bulk_create([Thread() for _ in range(3)])
    with connections["default"].cursor() as cursor:
        cursor.execute("TRUNCATE threads_thread CASCADE")
    assert tally("default") == real_count("default") == 0
    Thread.objects.create()
    assert tally("default") == 1


@on_both
def test_the_migration_counts_the_threads_already_there(alias: str) -> None:
    connection = connections[alias]
    with connection.schema_editor() as editor:
        migration.stop_tally(None, editor)
    try:
        ThreadTally.objects.using(alias).all().delete()
        Thread.objects.using(alias).bulk_create([Thread() for _ in range(4)])  # no trigger: not tallied
        assert tally(alias) == 0
    finally:
        with connection.schema_editor() as editor:
            migration.start_tally(None, editor)
    assert tally(alias) == real_count(alias) == 4
    Thread.objects.using(alias).create()
    assert tally(alias) == 5


def test_an_unfiltered_total_does_not_count_the_threads() -> None:
    Thread.objects.bulk_create([Thread(metadata={"n": n % 2}) for n in range(5)])
    with CaptureQueriesContext(connections["default"]) as queries:
        items, total = services.search_threads(limit=2)
        count = services.count_threads()
    assert (len(items), total, count) == (2, 5, 5)
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    # A filter still counts the rows it matches.
    assert services.search_threads(limit=1, metadata={"n": 1})[1] == services.count_threads(metadata={"n": 1}) == 2
    assert services.count_threads(metadata={}) == 5  # an empty filter is no filter


@pytest.mark.filterwarnings("ignore:No directory at")  # WhiteNoise: no collectstatic in tests
def test_the_admin_thread_list_counts_by_the_tally(admin_client) -> None:
    Thread.objects.bulk_create([Thread(status="idle") for _ in range(4)] + [Thread(status="error")])
    with CaptureQueriesContext(connections["default"]) as queries:
        listing = admin_client.get("/admin/threads/thread/")
    assert listing.status_code == 200 and "5 threads" in listing.content.decode()
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "threads_thread" in q["sql"]]
    assert not counts
    filtered = admin_client.get("/admin/threads/thread/?status__exact=error")
    assert "1 thread" in filtered.content.decode()  # a filter still counts its rows
