"""Django's SQLite backend, for many threads of one process writing to one file.

SQLite lets one connection write at a time; a writer that finds the file locked sleeps in
SQLite's busy handler (1, 2, 5, 10 ms and longer) before it tries again. In `manage.py dev`
requests, runs and checkpoint writes on a dozen threads write at once, and those sleeps,
with the wake-ups and retries around them, cost more than the writes. Here the writers of
one process queue on a lock of their own, handed to the next the moment the holder commits:
a transaction takes it before ``BEGIN`` and gives it back with its commit or rollback, a
write outside a transaction holds it for its one statement. The busy timeout still covers
writers of other processes (a ``manage.py`` command beside the server).

Use it as ``ENGINE: "agentserver.sqlite"``, with the options of Django's backend.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

from django.db import OperationalError
from django.db.backends.sqlite3 import base

T = TypeVar("T")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_lock(database: str) -> threading.Lock:
    """The lock of this process's writers to ``database`` (a file name or URI)."""
    with _locks_guard:
        return _locks.setdefault(database, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_lock = write_lock(self.settings_dict["NAME"])
        self.lock_timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5.0))
        self.holds_write_lock = False

    def acquire_write_lock(self) -> None:
        # As long as SQLite itself would wait: a writer stuck past it fails as SQLite's would.
        if not self.write_lock.acquire(timeout=self.lock_timeout):
            raise OperationalError("database is locked")
        self.holds_write_lock = True

    def release_write_lock(self) -> None:
        if self.holds_write_lock:
            self.holds_write_lock = False
            self.write_lock.release()

    def with_write_lock(self, call: Callable[..., T], *args: Any) -> T:
        self.acquire_write_lock()
        try:
            return call(*args)
        finally:
            self.release_write_lock()

    @contextlib.contextmanager
    def raw_write_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction straight on this thread's open sqlite3 connection, around
        Django's cursor and ``atomic``: for a thread whose event loop is running, where Django
        refuses to (see ``runs.lease``). It queues on the same lock and raises Django's
        errors; its statements take "qmark" placeholders (``to_qmark``)."""
        raw = self.connection
        with self.wrap_database_errors:
            self.acquire_write_lock()
            try:
                raw.execute("BEGIN IMMEDIATE")
                yield raw
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            finally:
                self.release_write_lock()

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=SQLiteCursorWrapper)
        cursor.wrapper = self
        return cursor

    def _start_transaction_under_autocommit(self) -> None:
        self.acquire_write_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self.release_write_lock()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self.release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self.release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.release_write_lock()


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    """Django's cursor: a write outside a transaction waits for the lock, and the placeholder
    conversion of each distinct statement is done once."""

    wrapper: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        if self._alone() and not is_read(query):
            return self.wrapper.with_write_lock(super().execute, query, params)
        return super().execute(query, params)

    def executemany(self, query: str, param_list: Any) -> Any:
        if self._alone():
            return self.wrapper.with_write_lock(super().executemany, query, param_list)
        return super().executemany(query, param_list)

    def _alone(self) -> bool:
        """Whether a statement runs outside any transaction (else that holds the lock)."""
        return not (self.connection.in_transaction or self.wrapper.holds_write_lock)

    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return to_qmark(query)
        return super().convert_query(query, param_names=param_names)


@lru_cache(maxsize=1024)
def to_qmark(query: str) -> str:
    """Django's "format" to "qmark" conversion, a regex substitution, once per statement."""
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


def is_read(query: str) -> bool:
    return query.lstrip()[:6].upper() == "SELECT"
