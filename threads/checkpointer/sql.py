"""The saver's SQL: statements on the checkpoint tables, how they are sent, and JSON columns.

Hot paths (``put``, ``put_writes``, ``get_tuple``) skip the ORM: building model instances
and compiling a query cost more than the database does for these small statements. The
statements use the models' table and column names and ``INSERT ... ON CONFLICT``, which
Postgres and SQLite (3.24+) share. On Postgres they go through a server-binding cursor
(bytes travel as binary, not hex-escaped in the query text); a write transaction is
mostly one statement (``Statements.transaction``), and several statements travel in one
pipeline: a single round trip either way.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from threads.checkpointer import transaction
from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite

Statement = tuple[str, Sequence[Any]]


class Put(NamedTuple):
    """``put``'s writes: its blobs' INSERTs, then its checkpoint's upsert (one statement on
    Postgres: see ``Statements.transaction``)."""

    key: tuple[str, ...]  # thread, namespace, checkpoint id: the rows it writes are its own
    blobs: list[Statement]
    checkpoint: Statement


class TaskWrites(NamedTuple):
    """``put_writes``'s INSERTs: a task's regular writes, then its special ones upserted."""

    key: tuple[str, ...]  # thread, namespace, checkpoint id, task id: likewise
    statements: list[Statement]


Write = Put | TaskWrites


# Rows per INSERT: 9 columns stay under SQLite's historical 999-parameter limit.
ROWS_PER_INSERT = 100
CHECKPOINT_COLUMNS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "parent_checkpoint_id",
    "checkpoint",
    "metadata",
)
BLOB_COLUMNS = ("thread_id", "checkpoint_ns", "channel", "version", "type", "blob")
# The checkpoint's key, the task, then a PendingWrite's fields and its sort key's.
WRITE_COLUMNS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "task_id",
    "task_path",
    "idx",
    "channel",
    "type",
    "blob",
)


class Statements:
    """The SQL of one database vendor, built once from the models' ``_meta``."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        quote = connection.ops.quote_name
        self.postgres = connection.vendor == "postgresql"
        jsonb = "::jsonb" if self.postgres else ""

        def table(model: type[Model]) -> str:
            return quote(model._meta.db_table)

        def columns(model: type[Model], names: Sequence[str]) -> str:
            return ", ".join(quote(model._meta.get_field(name).column) for name in names)

        checkpoint, blob, write = table(Checkpoint), table(CheckpointBlob), table(CheckpointWrite)
        checkpoint_key = columns(Checkpoint, ("thread_id", "checkpoint_ns", "checkpoint_id"))
        created = quote(Checkpoint._meta.get_field("created_at").column)
        self.upsert_checkpoint = (
            f"INSERT INTO {checkpoint} ({columns(Checkpoint, CHECKPOINT_COLUMNS)}, {created}) "
            f"VALUES (%s, %s, %s, %s, %s{jsonb}, %s{jsonb}, CURRENT_TIMESTAMP) "
            f"ON CONFLICT ({checkpoint_key}) DO UPDATE SET "
            + _set_excluded(quote, ("checkpoint", "metadata"))
        )
        blob_key = columns(CheckpointBlob, ("thread_id", "checkpoint_ns", "channel", "version"))
        self.insert_blobs = (
            f"INSERT INTO {blob} ({columns(CheckpointBlob, BLOB_COLUMNS)}) VALUES ",
            f" ON CONFLICT ({blob_key}) DO NOTHING",
        )
        write_key = columns(
            CheckpointWrite, ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx")
        )
        write_insert = f"INSERT INTO {write} ({columns(CheckpointWrite, WRITE_COLUMNS)}) VALUES "
        self.insert_writes = (write_insert, f" ON CONFLICT ({write_key}) DO NOTHING")
        self.upsert_writes = (
            write_insert,
            f" ON CONFLICT ({write_key}) DO UPDATE SET "
            + _set_excluded(quote, ("channel", "type", "blob", "task_path")),
        )
        self.select_checkpoint = (
            f"SELECT {columns(Checkpoint, CHECKPOINT_COLUMNS)} FROM {checkpoint} "
            "WHERE thread_id = %s AND checkpoint_ns = %s"
        )
        self.select_blobs = f"SELECT {columns(CheckpointBlob, BLOB_COLUMNS)} FROM {blob} WHERE "
        self.select_writes = f"SELECT {columns(CheckpointWrite, WRITE_COLUMNS)} FROM {write} WHERE "

    def inserts(self, statement: tuple[str, str], rows: Sequence[Sequence[Any]]) -> Iterator[Statement]:
        """Multi-row INSERTs of ``rows`` (none for no rows), ``ROWS_PER_INSERT`` at a time."""
        head, tail = statement
        for start in range(0, len(rows), ROWS_PER_INSERT):
            batch = rows[start : start + ROWS_PER_INSERT]
            placeholders = "(" + ", ".join(["%s"] * len(batch[0])) + ")"
            sql = head + ", ".join([placeholders] * len(batch)) + tail
            yield sql, [value for row in batch for value in row]

    def put(self, blobs: Sequence[Sequence[Any]], checkpoint: Sequence[Any]) -> Put:
        """A put's writes; ``checkpoint`` is its row's values, which begin with its key."""
        key = tuple(checkpoint[:3])
        return Put(key, list(self.inserts(self.insert_blobs, blobs)), (self.upsert_checkpoint, checkpoint))

    def transaction(self, writes: Sequence[Write], guard: Statement | None) -> list[Statement]:
        """The statements of one write transaction: ``writes`` behind ``guard``.

        On Postgres they are one statement, all writes data-modifying CTEs (a statement
        costs the client more CPU than the database), with the guard's SELECT as the main
        query, so that its error fails the statement and with it the transaction. That
        takes writes of distinct checkpoints and tasks (the Pregel loop queues a step's
        writes with the next checkpoint): no row of one is then a row of another, which one
        statement could not write twice. Otherwise each goes alone, behind the guard.
        SQLite has no data-modifying CTEs: each of its statements goes alone.
        """
        if not self.postgres:
            statements = [statement for write in writes for statement in _parts(write)]
            return statements if guard is None else [guard, *statements]
        if len({(type(write), write.key) for write in writes}) == len(writes):
            return [_one_statement([statement for write in writes for statement in _parts(write)], guard)]
        statements = [_one_statement(_parts(write), None) for write in writes]
        return statements if guard is None else [guard, *statements]

    def latest_checkpoint(self, thread_id: str, ns: str, checkpoint_id: str | None) -> Statement:
        """The checkpoint ``checkpoint_id``, or the latest of the thread and namespace."""
        if checkpoint_id:
            return self.select_checkpoint + " AND checkpoint_id = %s", (thread_id, ns, checkpoint_id)
        return self.select_checkpoint + " ORDER BY checkpoint_id DESC LIMIT 1", (thread_id, ns)

    def blobs(self, wanted: dict[tuple[str, str], set[tuple[str, str]]]) -> Statement:
        """Blobs of the wanted (channel, version) pairs per (thread, namespace); the IN lists
        cross channels and versions, so the caller keeps only the exact pairs."""
        where, params = [], []
        for (thread_id, ns), pairs in wanted.items():
            channels, versions = {c for c, _ in pairs}, {v for _, v in pairs}
            where.append(
                f"(thread_id = %s AND checkpoint_ns = %s AND channel IN ({_marks(channels)}) "
                f"AND version IN ({_marks(versions)}))"
            )
            params += [thread_id, ns, *channels, *versions]
        return self.select_blobs + " OR ".join(where), params

    def writes(self, ids: dict[tuple[str, str], set[str]]) -> Statement:
        """Pending writes of the given checkpoint ids per (thread, namespace)."""
        where, params = [], []
        for (thread_id, ns), checkpoint_ids in ids.items():
            where.append(
                f"(thread_id = %s AND checkpoint_ns = %s AND checkpoint_id IN ({_marks(checkpoint_ids)}))"
            )
            params += [thread_id, ns, *checkpoint_ids]
        return self.select_writes + " OR ".join(where), params


def _parts(write: Write) -> list[Statement]:
    return write.statements if isinstance(write, TaskWrites) else [*write.blobs, write.checkpoint]


def _one_statement(statements: Sequence[Statement], guard: Statement | None) -> Statement:
    """``statements`` (rows no two of which are the same) as one: data-modifying CTEs
    ahead of the last, or of the guard's SELECT."""
    ctes, params = [], []
    if guard is not None:
        ctes.append(f"guard AS ({guard[0]})")
        params += guard[1]
        statements = [*statements, ("SELECT * FROM guard", ())]
    *writes, (main, main_params) = statements
    for number, (sql, values) in enumerate(writes):
        ctes.append(f"write{number} AS ({sql})")
        params += values
    params += main_params
    return (f"WITH {', '.join(ctes)} {main}" if ctes else main), params


def statements(using: str) -> Statements:
    return _statements(using, connections[using].vendor)


@functools.cache
def _statements(using: str, vendor: str) -> Statements:
    return Statements(connections[using])


def _set_excluded(quote: Any, names: Sequence[str]) -> str:
    return ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in names)


def _marks(values: Sequence[Any] | set[Any]) -> str:
    return ", ".join(["%s"] * len(values))


# ----------------------------------------------------------------- sending


def execute(using: str, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order: handed to the open write transaction
    (``transaction.write_transaction``), else pipelined together on Postgres."""
    connection = connections[using]
    if (tx := transaction.active(connection)) is not None:
        tx.queue(statements, _cursor(connection))
        return
    with _pipeline(connection, len(statements) > 1):
        cursor = _cursor(connection)
        for sql, params in statements:
            cursor.execute(sql, params)


def fetch_one(using: str, statement: Statement) -> tuple[Any, ...] | None:
    connection = connections[using]
    with contextlib.closing(_cursor(connection)) as cursor:
        cursor.execute(*statement)
        return cursor.fetchone()


def fetch_last(using: str, statements: Sequence[Statement]) -> list[tuple[Any, ...]]:
    """Postgres: the rows of the last of ``statements``, all sent as one query text (their
    values bound by the client) outside any transaction: one round trip and one implicit
    transaction, without a pipeline's machinery or a BEGIN."""
    with contextlib.closing(_cursor(connections[using], bind_on_client=True)) as cursor:
        cursor.execute("; ".join(sql for sql, _ in statements), [value for _, values in statements for value in values])
        while cursor.nextset():
            pass
        return cursor.fetchall()


def fetch_all(using: str, statements: Sequence[Statement | None]) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement (none for ``None``); on Postgres pipelined, in binary."""
    connection = connections[using]
    cursors: list[Any] = []
    with _pipeline(connection, len(statements) > 1):
        for statement in statements:
            if statement is None:
                cursors.append(None)
                continue
            cursor = _cursor(connection, binary=True)
            cursor.execute(*statement)
            cursors.append(cursor)
        rows = [cursor.fetchall() if cursor is not None else [] for cursor in cursors]
    for cursor in cursors:
        if cursor is not None:
            cursor.close()
    return rows


def _cursor(connection: BaseDatabaseWrapper, *, binary: bool = False, bind_on_client: bool = False) -> Any:
    """A cursor wrapped as Django wraps its own (query logging, execute wrappers, error
    translation); on Postgres one that binds parameters server-side, unless
    ``bind_on_client`` (several statements in one query text)."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = (psycopg.ClientCursor if bind_on_client else psycopg.Cursor)(connection.connection)
    if binary:
        raw.format = psycopg.pq.Format.BINARY
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


@contextlib.contextmanager
def _pipeline(connection: BaseDatabaseWrapper, wanted: bool) -> Iterator[None]:
    """Postgres pipeline mode around the block: statements are sent without waiting, and
    their results (and errors, as Django's) arrive at the end of the block."""
    if not wanted or connection.vendor != "postgresql" or not transaction.pipeline_supported():
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


# ------------------------------------------------------------------- JSON


def dump_json(value: Any) -> str:
    """JSON text for a JSON column; ``json`` takes what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def dump_metadata(metadata: Any) -> str:
    """Metadata as JSON without NUL characters, which Postgres JSONB rejects."""
    text = dump_json(metadata)
    return dump_json(strip_nul(metadata)) if "\\u0000" in text else text


def load_json(value: Any) -> Any:
    """A JSON column's value; rows SQLite stored before may hold NaN, which orjson refuses."""
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def strip_nul(value: Any) -> Any:
    """``value`` without NUL characters in any string, key or nested item."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_nul(v) for v in value]
    return value
