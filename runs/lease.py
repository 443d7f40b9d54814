"""Claim and lease: who may execute a run, and the token that fences everything it writes.

1. ``claim_run`` is one statement: a conditional UPDATE ... RETURNING of a ``pending`` run
   whose start time has come, or a ``running`` run whose lease expired (its worker died),
   with no other run of the thread running or queued ahead of it. It bumps ``attempt``
   and issues a fresh ``lease_token``. No row, no execution: duplicate messages are no-ops.
2. A heartbeat renews the lease every ``HEARTBEAT_SECONDS`` (``heartbeat_check``), so a
   node that blocks for minutes does not look dead; it also notices recorded cancels. One
   ``LeaseKeeper`` thread per process beats for all of its attempts.
3. Every write after the claim names the token: checkpoint writes check it inside their
   own transaction (``FencedCheckpointSaver``), the finish conditions its UPDATE on it. A
   worker that lost its lease (paused past it, partitioned) writes nothing.

The hot statements are written as SQL once, rather than compiled by the ORM on every
call: the claim and the fence run for every run and every checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

import psycopg
from django.db import DataError, connections
from django.utils import timezone
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, get_checkpoint_id

from agentserver.conf import server_settings
from agentserver.rows import fetch_instance, model_columns
from agentserver.sqlite.base import DatabaseWrapper as SQLiteWrapper
from agentserver.sqlite.base import to_qmark
from runs.models import Run, RunStatus
from runs.sql import db_value
from threads.checkpointer import DjangoCheckpointSaver, sql
from threads.checkpointer.transaction import pipeline_supported, send_implicitly
from threads.checkpointer.workers import running_loop

logger = logging.getLogger(__name__)
DIVISION_BY_ZERO = "22012"  # Postgres's SQLSTATE: how the lease check fails a transaction


class LeaseLost(Exception):
    """This worker no longer owns the run: another attempt has (or will) take over."""


@cache
def _claim_sql(vendor: str) -> str:
    """The claim, one statement, that reads the claimed run and its thread's in-flight runs
    only, however many runs wait elsewhere. With statistics taken while few runs were pending,
    Postgres estimates the in-flight index empty and would scan all of it: for the run itself
    (so its status test is a CASE, from which the index's predicate cannot be inferred: the
    primary key finds it), and for the runs ahead of it unless their thread is a value known
    before the scan (the subselect) rather than a join condition."""
    table = Run._meta.db_table
    return f"""
        UPDATE {table} SET status = 'running', attempt = attempt + 1, lease_token = %(token)s,
               lease_expires_at = %(expires)s, started_at = %(now)s
         WHERE run_id = %(run_id)s AND cancel_action = '' AND attempt < %(max_attempts)s
           AND CASE status WHEN 'pending' THEN created_at <= %(now)s
                           WHEN 'running' THEN lease_expires_at < %(now)s ELSE false END
           AND NOT EXISTS (
               SELECT 1 FROM {table} other
                WHERE other.thread_id = (SELECT thread_id FROM {table} WHERE run_id = %(run_id)s)
                  AND other.run_id <> {table}.run_id
                  AND (other.status = 'running'
                       OR (other.status = 'pending' AND other.created_at < {table}.created_at)))
        RETURNING {model_columns(Run)}"""


def claim_run(run_id: str, using: str = "default") -> Run | None:
    """Take ownership of ``run_id`` for one attempt, or return None (see module docstring)."""
    now = timezone.now()
    connection = connections[using]
    params = {
        "token": db_value("lease_token", uuid.uuid4(), connection),
        "expires": db_value("lease_expires_at", now + timedelta(seconds=server_settings.LEASE_SECONDS), connection),
        "now": db_value("created_at", now, connection),
        "run_id": db_value("run_id", uuid.UUID(str(run_id)), connection),
        "max_attempts": server_settings.RUN_MAX_ATTEMPTS,
    }
    return fetch_instance(Run, _claim_sql(connection.vendor), params, using)


def _renew(run_id: str, token: uuid.UUID, expires: datetime) -> int:
    return Run.objects.filter(pk=run_id, lease_token=token, status=RunStatus.RUNNING, cancel_action="").update(
        lease_expires_at=expires
    )


def heartbeat_check(run_id: str, token: uuid.UUID) -> str:
    """Renew the lease; answer "ok", the recorded cancel action, or "lost"."""
    if _renew(run_id, token, timezone.now() + timedelta(seconds=server_settings.LEASE_SECONDS)):
        return "ok"
    cancelled = Run.objects.filter(pk=run_id, lease_token=token, status=RunStatus.RUNNING).exclude(cancel_action="")
    action = cancelled.values_list("cancel_action", flat=True).first()
    return "lost" if action is None else action


class LeaseKeeper:
    """The heartbeat of every attempt running in this process, on one thread.

    ``hold`` registers an attempt with a callback; each beat renews its lease and, when the
    answer is not "ok" (a recorded cancel action, or "lost"), calls the callback once and
    lets the attempt go. Starting a thread per run would cost more than the run.
    """

    def __init__(self) -> None:
        # By token, not run id: a takeover attempt in this process must not be let go by
        # the attempt it replaced.
        self._held: dict[uuid.UUID, tuple[str, Callable[[str], None]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, run_id: str, token: uuid.UUID, on_verdict: Callable[[str], None]) -> None:
        with self._lock:
            self._held[token] = (run_id, on_verdict)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="agentserver-leases", daemon=True)
                self._thread.start()

    def release(self, token: uuid.UUID) -> None:
        with self._lock:
            self._held.pop(token, None)

    def _beat(self) -> None:
        while True:
            time.sleep(server_settings.HEARTBEAT_SECONDS)
            with self._lock:
                held = list(self._held.items())
            try:
                for token, (run_id, on_verdict) in held:
                    try:
                        verdict = heartbeat_check(run_id, token)
                    except Exception:  # the database is away: try again next beat, the lease is longer
                        logger.exception("Lease renewal of run %s failed", run_id)
                        continue
                    if verdict != "ok":
                        self.release(token)
                        on_verdict(verdict)
            finally:
                connections.close_all()  # one checkout per beat, none held while asleep


lease_keeper = LeaseKeeper()


@cache
def _fence_sql(vendor: str) -> str:
    """The lease check of a write transaction.

    On Postgres it goes in the same round trip as the writes (mostly in the same
    statement, see ``sql.Statements.transaction``), so it cannot answer; it fails the
    transaction instead: 1 / (number of rows that are still ours) divides by zero once the
    lease is lost, and the transaction's writes are rolled back. FOR SHARE keeps the row
    ours until commit: a takeover's claim waits for us, while concurrent writes of this
    attempt do not wait for each other. SQLite serialises writers anyway and has no row
    locks: there the row is read and checked.
    """
    held = f"SELECT 1 FROM {Run._meta.db_table} WHERE run_id = %s AND lease_token = %s AND status = 'running'"
    if vendor == "postgresql":
        return f"SELECT 1 / (SELECT count(*) FROM ({held} FOR SHARE) AS held)"
    return held


def _fence(run_id: str, token: uuid.UUID, using: str) -> tuple[str, list]:
    connection = connections[using]
    params = [db_value("run_id", uuid.UUID(str(run_id)), connection), db_value("lease_token", token, connection)]
    return _fence_sql(connection.vendor), params


def _read_key(config: RunnableConfig) -> tuple:
    conf = config["configurable"]
    return str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config)


def _is_fence_failure(error: DataError | psycopg.DataError) -> bool:
    """Whether the lease check failed the write: psycopg's error, or Django's wrapping it."""
    cause = error if isinstance(error, psycopg.DataError) else error.__cause__
    return getattr(cause, "sqlstate", None) == DIVISION_BY_ZERO


class FencedCheckpointSaver(DjangoCheckpointSaver):
    """Our checkpointer, refusing every write once the attempt's lease is lost."""

    def __init__(self, run_id: str, token: uuid.UUID, using: str = "default") -> None:
        super().__init__(using)
        self.run_id, self.token = run_id, token
        self.guard_in_band = connections[using].vendor == "postgresql"
        self.fence = _fence(run_id, token, using)  # the same statement for each of the attempt's writes
        self._read_ahead: tuple[tuple, CheckpointTuple | None] | None = None
        # Where the writes of an attempt's loop go (see ``_start_flush``): a pooled Postgres
        # connection, or on SQLite the connection of the thread that runs the loop next.
        self.loop_pool = _loop_pool(using) if self.guard_in_band else None
        self.loop_connection = None if self.guard_in_band else _thread_connection(using)
        self.loop_thread = threading.get_ident()

    def read_ahead(self, config: RunnableConfig) -> None:
        """Read now, on the calling thread, the checkpoint the graph asks for first: its
        ``aget_tuple`` then takes this answer instead of a hop to a worker thread and back.
        For the executor, which claims the run on a thread with no loop running yet; the
        attempt holds the thread, so nothing else writes its checkpoints in between."""
        try:
            self._read_ahead = (_read_key(config), self.get_tuple(config))
        except Exception:  # the graph's own read meets the error and fails the attempt as usual
            logger.warning("Run %s: could not read its checkpoint ahead", self.run_id, exc_info=True)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ahead, self._read_ahead = self._read_ahead, None  # good for the first read only
        if ahead is not None and ahead[0] == _read_key(config):
            return ahead[1]
        return await super().aget_tuple(config)

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writes are written on the attempt's own loop, which serves this graph alone
        (see ``runs.executor``) and waits for them anyway: no hop to a worker thread and
        back. They bypass Django's cursor wrappers there (the ORM refuses to run in a loop's
        thread), so its query log and ``execute_wrapper`` hooks do not see them. Measured
        with ``bench/ab.py``: worker CPU per run -10 % on Postgres; on SQLite, where the thread
        keeps its connection, dev CPU per run -9 % (one connection opened per attempt instead
        had cost +15 %)."""
        if self._loop_writer() is None:
            super()._start_flush(loop)
        else:
            loop.call_soon(self._flush)

    def _write(self, batch: list[sql.Write]) -> None:
        writer = self._loop_writer() if running_loop() is not None else None
        if writer is None:
            super()._write(batch)
        else:
            writer(batch)

    def _loop_writer(self) -> Callable[[list[sql.Write]], None] | None:
        """How this thread's event loop writes by itself, if it can: on a pooled Postgres
        connection, or on this thread's own SQLite connection (open, as the claim left it)."""
        if self.loop_pool is not None:
            return self._write_pooled
        own = self.loop_connection
        if own is not None and own.connection is not None and threading.get_ident() == self.loop_thread:
            return self._write_on_own_connection
        return None

    def _write_pooled(self, batch: list[sql.Write]) -> None:
        """Postgres: on a connection borrowed from the pool, in one implicit transaction,
        its fence failure a ``LeaseLost``."""
        statements = self.statements.transaction(batch, self.write_guard())
        try:
            with self.loop_pool.connection() as raw:
                if not raw.autocommit:  # Django gives one back from a broken atomic block as it was
                    raw.autocommit = True
                with psycopg.Cursor(raw) as cursor:
                    send = partial(_execute_all, cursor, statements)
                    send_implicitly(raw, send, len(statements))
        except psycopg.DataError as error:
            if _is_fence_failure(error):
                raise self._lease_lost() from error
            raise

    def _write_on_own_connection(self, batch: list[sql.Write]) -> None:
        """SQLite: on the thread's own connection, in a transaction that checks the lease first."""
        fence, fence_params = self.fence
        with self.loop_connection.raw_write_transaction() as raw:
            if raw.execute(to_qmark(fence), fence_params).fetchone() is None:
                raise self._lease_lost()
            for statement, params in self.statements.transaction(batch, None):
                raw.execute(to_qmark(statement), params)

    def write_guard(self) -> tuple[str, list] | None:
        return self.fence if self.guard_in_band else None

    def guarded_writes(self) -> bool:
        return not self.guard_in_band  # in band, the check is one of the writes

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        try:
            with super().write_transaction():
                if not self.guard_in_band and not self._holds_lease():
                    raise self._lease_lost()
                yield
        except DataError as error:
            if _is_fence_failure(error):
                raise self._lease_lost() from error
            raise

    def _lease_lost(self) -> LeaseLost:
        return LeaseLost(f"run {self.run_id}: lease lost, write refused")

    def _holds_lease(self) -> bool:
        with connections[self.using].cursor() as cursor:
            cursor.execute(*self.fence)
            return cursor.fetchone() is not None


def _loop_pool(using: str) -> Any:
    """Django's psycopg pool of ``using`` (opened, as Django does on first use), when the
    writes of an event loop can use it: pooled (``OPTIONS["pool"]``, our default on
    Postgres) and with pipelines. None otherwise."""
    pool = connections[using].pool if pipeline_supported() else None
    if pool is not None:
        pool.open()
    return pool


def _thread_connection(using: str) -> SQLiteWrapper | None:
    """This thread's connection to ``using``, if it is SQLite through ``agentserver.sqlite``
    and no event loop runs here yet: the loop this thread runs next may write on it."""
    connection = connections[using]
    return connection if running_loop() is None and isinstance(connection, SQLiteWrapper) else None


def _execute_all(cursor: Any, statements: list[sql.Statement]) -> None:
    for statement, params in statements:
        cursor.execute(statement, params)
