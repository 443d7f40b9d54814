"""The saver's write transaction: on Postgres, the writes (with BEGIN and COMMIT if needed)
in one round trip."""

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

_local = threading.local()  # .active: alias -> this thread's open write transaction


def write_transaction(using: str, *, guarded: bool) -> AbstractContextManager[Any]:
    """Django's ``atomic`` on ``using``, pipelined on Postgres (see ``PipelinedTransaction``);
    ``guarded`` if code other than the saver's writes may run in it. Unguarded writes outside
    any ``atomic`` block need none of its bookkeeping (see ``ImplicitTransaction``)."""
    connection = connections[using]
    if connection.vendor == "postgresql" and pipeline_supported():
        if not guarded and not connection.in_atomic_block:
            return ImplicitTransaction(connection)
        return PipelinedTransaction(connection)
    return transaction.atomic(using=using)


def active(connection: BaseDatabaseWrapper) -> PipelinedTransaction | ImplicitTransaction | None:
    """The pipelined transaction open on ``connection`` in this thread, if any."""
    return _registry().get(connection.alias)


@functools.cache
def pipeline_supported() -> bool:
    import psycopg

    return psycopg.Pipeline.is_supported()


class PipelinedTransaction:
    """Django's ``atomic``, whose BEGIN and COMMIT travel with the statements: for writes
    that share their transaction with other statements (a subclass's guard).

    psycopg, outside autocommit, sends BEGIN by itself before a transaction's first
    statement and waits for it, in pipeline mode too, and COMMIT is one more wait: three
    round trips, and as many commands, for a ``put`` whose writes need one. So, for an
    outermost block (a nested one is Django's ``atomic`` alone, and the writes in it are
    pipelined among themselves):

    1. ``atomic`` is entered as usual (Django's bookkeeping: nested blocks, ``on_commit``,
       rollback on error), then the psycopg connection is put in autocommit, so that
       psycopg sends no BEGIN of its own.
    2. The saver's writes (``queue``) open a pipeline and stay queued there. Our BEGIN goes
       ahead of the block's first statement: with the writes, or pipelined with any other
       statement (the guard), which is then synced so that its results are complete when
       it returns; a statement arriving while writes are queued is synced likewise.
    3. On success COMMIT joins the pipeline, which is synced once. A write's error surfaces
       there, as Django's.
    4. ``atomic`` exits: its commit finds the transaction closed; after an error, its
       rollback ends ours.

    The saver's writes alone need none of this: see ``ImplicitTransaction``.
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
            try:
                self.connection.connection.autocommit = True
            except BaseException as error:
                self.atomic.__exit__(type(error), error, error.__traceback__)
                raise
            self.stack.enter_context(self.connection.execute_wrapper(self))
            _registry()[self.connection.alias] = self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.outermost:
            del _registry()[self.connection.alias]
            connection = self.connection
            if exc_type is not None or connection.needs_rollback or connection.closed_in_transaction:
                self._discard(exc_type, exc, tb)
            else:
                try:
                    self._commit()
                except BaseException as error:
                    self.atomic.__exit__(type(error), error, error.__traceback__)
                    raise
        self.atomic.__exit__(exc_type, exc, tb)

    def queue(self, statements: Sequence[tuple[str, Sequence[Any]]], cursor: Any) -> None:
        """Send ``statements`` on ``cursor`` (of this connection) without waiting for them."""
        if self.pipeline is None:
            self.pipeline = self.stack.enter_context(self.connection.connection.pipeline())
        if not self.begun:
            cursor.cursor.execute("BEGIN")  # the driver's cursor: not one of "the statements"
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
            if self.begun:
                self.connection.connection.execute("COMMIT")  # queued if the pipeline is open
            self.stack.close()  # syncs the pipeline, if open

    def _discard(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Leave the block without committing; ``atomic`` then rolls back what is left."""
        if self.pipeline is not None:
            # Queued, so the sync cannot commit what the block queued (an aborted pipeline
            # skips it).
            with contextlib.suppress(Exception):
                self.connection.connection.execute("ROLLBACK")
        # psycopg keeps an exception of the block over the pipeline's own errors.
        with contextlib.suppress(Exception):
            self.stack.__exit__(exc_type, exc, tb)


class ImplicitTransaction:
    """The saver's writes alone, sent as the block ends on a connection in autocommit mode:
    one statement by itself, several in one pipeline, whose statements up to its sync are one
    implicit transaction, all committed or none (as in langgraph-checkpoint-postgres).

    No Django ``atomic`` around it: with no other statement in the block, no ``on_commit``
    and no enclosing block, there is nothing for ``atomic`` to keep track of, and entering
    and leaving it (with the autocommit switches) cost about a fifth of a run's checkpoint
    write. Nor a pipeline for one statement (on Postgres a write transaction mostly is one,
    see ``sql.Statements.transaction``), whose entering and syncing would cost more than
    the statement."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.queued: list[tuple[Any, Sequence[tuple[str, Sequence[Any]]]]] = []

    def __enter__(self) -> None:
        _registry()[self.connection.alias] = self

    def queue(self, statements: Sequence[tuple[str, Sequence[Any]]], cursor: Any) -> None:
        """Send ``statements`` on ``cursor`` (of this connection) as the block ends."""
        self.queued.append((cursor, statements))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        del _registry()[self.connection.alias]
        if exc_type is not None:  # nothing was sent
            return
        count = sum(len(statements) for _, statements in self.queued)
        with self.connection.wrap_database_errors:
            send_implicitly(self.connection.connection, self._send, count)

    def _send(self) -> None:
        for cursor, statements in self.queued:
            for sql, params in statements:
                cursor.execute(sql, params)


def send_implicitly(raw: Any, send: Callable[[], None], count: int) -> None:
    """``send()``, which executes ``count`` statements on ``raw`` (a psycopg connection in
    autocommit mode), as one implicit transaction: a statement by itself, several in one
    pipeline, whose statements up to its sync are committed together or not at all."""
    if count <= 1:
        send()
        return
    pipeline = raw.pipeline()
    pipeline.__enter__()
    try:
        send()
    except BaseException as error:
        # The sync would commit what was sent before the error: a ROLLBACK queued ahead
        # of it ends the implicit transaction (an aborted pipeline skips it).
        with contextlib.suppress(Exception):
            raw.execute("ROLLBACK")
        with contextlib.suppress(Exception):  # the error is the one to see
            pipeline.__exit__(type(error), error, error.__traceback__)
        raise
    pipeline.__exit__(None, None, None)  # the sync: commits, or raises


def _registry() -> dict[str, PipelinedTransaction | ImplicitTransaction]:
    try:
        return _local.active
    except AttributeError:
        _local.active = {}
        return _local.active
