"""The saver's write transaction: on Postgres, BEGIN, the writes and COMMIT in one round trip."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

_local = threading.local()  # .active: alias -> this thread's PipelinedTransaction


def write_transaction(using: str) -> AbstractContextManager[Any]:
    """Django's ``atomic`` on ``using``, pipelined on Postgres (see ``PipelinedTransaction``)."""
    connection = connections[using]
    if connection.vendor == "postgresql" and pipeline_supported():
        return PipelinedTransaction(connection)
    return transaction.atomic(using=using)


def active(connection: BaseDatabaseWrapper) -> PipelinedTransaction | None:
    """The pipelined transaction open on ``connection`` in this thread, if any."""
    return _registry().get(connection.alias)


@functools.cache
def pipeline_supported() -> bool:
    import psycopg

    return psycopg.Pipeline.is_supported()


class PipelinedTransaction:
    """Django's ``atomic``, whose BEGIN and COMMIT travel with the statements.

    psycopg, outside autocommit, sends BEGIN by itself before a transaction's first
    statement and waits for it, in pipeline mode too, and COMMIT is one more wait: three
    round trips for a ``put`` whose writes need one. So, for an outermost block:

    1. ``atomic`` is entered as usual (Django's bookkeeping: nested blocks, ``on_commit``,
       rollback on error), then the psycopg connection is put in autocommit, so that
       psycopg sends no BEGIN of its own.
    2. Our BEGIN goes ahead of the first statement. The saver's writes (``queue``) open a
       pipeline with it and stay queued there. Any other statement (a subclass's guard)
       is pipelined with it and synced, so its results are complete when it returns; one
       arriving while writes are queued is synced likewise.
    3. On success COMMIT joins the pipeline, which is synced once: the only wait of a
       plain ``put``. A write's error surfaces there, as Django's.
    4. ``atomic`` exits: its commit finds the transaction closed; after an error, its
       rollback ends ours.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.atomic = transaction.atomic(using=connection.alias)
        self.outermost = self.begun = self.own = False
        self.pipeline: Any = None  # psycopg.Pipeline while writes are queued
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> None:
        self.outermost = not self.connection.in_atomic_block
        self.atomic.__enter__()
        if self.outermost:
            self.connection.connection.autocommit = True
            self.stack.enter_context(self.connection.execute_wrapper(self))
            _registry()[self.connection.alias] = self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.outermost:
            del _registry()[self.connection.alias]
            if exc_type is not None:
                self.stack.__exit__(exc_type, exc, tb)  # psycopg drops the pipeline's own errors
            else:
                try:
                    self._commit()
                except BaseException as error:
                    self.atomic.__exit__(type(error), error, error.__traceback__)
                    raise
        self.atomic.__exit__(exc_type, exc, tb)

    def queue(self, statements: Sequence[tuple[str, Sequence[Any]]], cursor: Any) -> None:
        """Send ``statements`` on ``cursor`` (of this connection) without waiting for them."""
        raw = self.connection.connection
        if self.pipeline is None:
            self.pipeline = self.stack.enter_context(raw.pipeline())
        if not self.begun:
            raw.execute("BEGIN")
            self.begun = True
        self.own = True
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
        finally:
            self.own = False

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        """Execute wrapper for the other statements of the block (see step 2)."""
        if self.own:
            return execute(sql, params, many, context)
        if self.pipeline is not None:
            result = execute(sql, params, many, context)
            with self.connection.wrap_database_errors:
                self.pipeline.sync()
            return result
        if self.begun:
            return execute(sql, params, many, context)
        self.begun = True
        raw = self.connection.connection
        with self.connection.wrap_database_errors, raw.pipeline():
            raw.execute("BEGIN")
            return execute(sql, params, many, context)

    def _commit(self) -> None:
        with self.connection.wrap_database_errors:
            if self.pipeline is not None:
                self.connection.connection.execute("COMMIT")
                self.stack.close()  # syncs the pipeline
                return
            self.stack.close()
            if self.begun:
                self.connection.connection.execute("COMMIT")


def _registry() -> dict[str, PipelinedTransaction]:
    try:
        return _local.active
    except AttributeError:
        _local.active = {}
        return _local.active
