"""``DjangoCheckpointSaver``: reads and writes of checkpoints, sync and async."""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from itertools import islice
from typing import Any, ClassVar, TypeVar

from django.db import connections, models
from django.db.models import Q
from django.db.models.fields.json import KeyTransform
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.base import Checkpoint as LangGraphCheckpoint
from langgraph.checkpoint.serde.base import SerializerProtocol

from threads.checkpointer import sql, transaction
from threads.checkpointer.maintenance import Group, Maintenance
from threads.checkpointer.workers import Workers, release_connections, running_loop, settle
from threads.models import Checkpoint

T = TypeVar("T")
# (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata),
# the two JSON columns decoded.
Row = tuple[str, str, str, "str | None", dict[str, Any], dict[str, Any]]
Blobs = dict[tuple[str, str, str, str], tuple[str, bytes]]
# (task_path, task_id, idx, channel, type, blob) by (thread_id, checkpoint_ns, checkpoint_id)
Writes = dict[tuple[str, str, str], builtins.list[tuple[str, str, int, str, str, bytes]]]


class DjangoCheckpointSaver(Maintenance, BaseCheckpointSaver[str]):
    """A ``BaseCheckpointSaver`` on the ``using`` database; sync and async."""

    list_page_size: ClassVar[int] = 100
    # Every worker thread may hold a database connection: this bounds them per process.
    # On SQLite, one: it writes one transaction at a time (agentserver.sqlite queues the
    # process's writers), so more threads only wait for each other, each with a connection
    # whose page cache every other one's commit makes stale.
    max_workers: ClassVar[int] = 8
    _pool: ClassVar[tuple[int, Workers] | None] = None
    _pool_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, using: str = "default", *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.using = using
        # Async writes waiting for a worker thread (see ``_coalesced``).
        self._queued: builtins.list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, Any]] = []
        self._flushing = False
        self._queue_lock = threading.Lock()

    @functools.cached_property
    def statements(self) -> sql.Statements:
        """The SQL of this saver's database, looked up once: every read and write builds on it."""
        return sql.statements(self.using)

    # ------------------------------------------------------------------ reads

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config``, else the latest of its thread and namespace.

        Three queries: the row, then its blobs and its pending writes (pipelined on Postgres).
        """
        conf = config["configurable"]
        statement = self.statements.latest_checkpoint(
            str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config)
        )
        row = sql.fetch_one(self.using, statement)
        if row is None:
            return None
        thread_id, ns, checkpoint_id, parent, checkpoint, metadata = row
        decoded: Row = (
            thread_id,
            ns,
            checkpoint_id,
            parent,
            sql.load_json(checkpoint),
            sql.load_json(metadata),
        )
        return self._load_tuples([decoded])[0]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Matching checkpoints, newest first, read in keyset pages of three queries each.

        Pages hold no open cursor, so the iterator may be advanced from any thread.
        """
        rows = self._search(config, filter, before)
        left = limit
        while left is None or left > 0:
            size = self.list_page_size if left is None else min(left, self.list_page_size)
            page: builtins.list[Row] = builtins.list(rows.values_list(*sql.CHECKPOINT_COLUMNS)[:size])
            yield from self._load_tuples(page)
            if len(page) < size:
                return
            left = None if left is None else left - len(page)
            rows = self._search(config, filter, before).filter(_after(page[-1]))

    def _search(
        self, config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None
    ) -> models.QuerySet[Checkpoint]:
        """The checkpoints ``list`` pages through.

        Metadata filters are JSON key lookups (keys and values are bound parameters), each
        on an alias so a key is never parsed as a lookup path ("a__b", "contains").
        """
        rows = self._rows()
        conf = (config or {}).get("configurable", {})
        if conf.get("thread_id") is not None:
            rows = rows.filter(thread_id=str(conf["thread_id"]))
        if conf.get("checkpoint_ns") is not None:
            rows = rows.filter(checkpoint_ns=conf["checkpoint_ns"])
        if checkpoint_id := conf.get("checkpoint_id"):
            rows = rows.filter(checkpoint_id=checkpoint_id)
        if before and (before_id := get_checkpoint_id(before)):
            rows = rows.filter(checkpoint_id__lt=before_id)
        for i, (key, value) in enumerate((filter or {}).items()):
            alias = f"_metadata_{i}"
            rows = rows.alias(**{alias: KeyTransform(sql.strip_nul(key), "metadata")})
            rows = rows.filter(**{alias: sql.strip_nul(value)})
        return rows.order_by("-checkpoint_id", "-checkpoint_ns", "-thread_id")

    def _load_tuples(self, rows: Sequence[Row]) -> builtins.list[CheckpointTuple]:
        """Tuples for ``rows``, with their blobs and writes in one query each."""
        if not rows:
            return []
        wanted: dict[Group, set[tuple[str, str]]] = defaultdict(set)
        ids: dict[Group, set[str]] = defaultdict(set)
        for thread_id, ns, checkpoint_id, _, checkpoint, _ in rows:
            ids[(thread_id, ns)].add(checkpoint_id)
            for channel, version in checkpoint.get("channel_versions", {}).items():
                wanted[(thread_id, ns)].add((channel, str(version)))
        statements = self.statements
        blob_rows, write_rows = sql.fetch_all(
            self.using, [statements.blobs(wanted) if wanted else None, statements.writes(ids)]
        )
        blobs: Blobs = {}
        for thread_id, ns, channel, version, type_, blob in blob_rows:
            # The IN lists cross channels and versions: keep only the exact pairs.
            if type_ != "empty" and (channel, version) in wanted.get((thread_id, ns), ()):
                blobs[(thread_id, ns, channel, version)] = (type_, _bytes(blob))
        writes: Writes = defaultdict(builtins.list)
        for thread_id, ns, checkpoint_id, task_id, task_path, idx, channel, type_, blob in write_rows:
            writes[(thread_id, ns, checkpoint_id)].append((task_path, task_id, idx, channel, type_, blob))
        for found in writes.values():
            found.sort(key=lambda w: writes_sort_key(w[0], w[1], w[2]))
        return [self._make_tuple(row, blobs, writes) for row in rows]

    def _make_tuple(self, row: Row, blobs: Blobs, writes: Writes) -> CheckpointTuple:
        """One tuple; each row's JSON and values are decoded afresh, so no two tuples share objects."""
        thread_id, ns, checkpoint_id, parent, checkpoint, metadata = row
        loads = self.serde.loads_typed
        checkpoint["channel_values"] = {
            channel: loads(blobs[key])
            for channel, version in checkpoint.get("channel_versions", {}).items()
            if (key := (thread_id, ns, channel, str(version))) in blobs
        }
        pending: builtins.list[PendingWrite] = [
            (task_id, channel, loads((type_, _bytes(blob))))
            for _, task_id, _, channel, type_, blob in writes.get((thread_id, ns, checkpoint_id), ())
        ]
        return CheckpointTuple(
            config=_config(thread_id, ns, checkpoint_id),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=metadata,  # type: ignore[arg-type]
            parent_config=_config(thread_id, ns, parent) if parent else None,
            pending_writes=pending,
        )

    # ----------------------------------------------------------------- writes

    def put(
        self,
        config: RunnableConfig,
        checkpoint: LangGraphCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save the checkpoint row and the blobs of its new channel versions, in one transaction.

        A blob already stored for a (channel, version) is kept: a version names one value.
        A channel without a value (cleared) needs no blob.
        """
        batch, saved = self._put_batch(config, checkpoint, metadata, new_versions)
        self._write(batch)
        return saved

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes: regular ones insert-or-ignore, special channels upserted.

        No writes, no transaction.
        """
        batch, _ = self._writes_batch(config, writes, task_id, task_path)
        if batch:
            self._write(batch)

    def _put_batch(
        self,
        config: RunnableConfig,
        checkpoint: LangGraphCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[builtins.list[sql.Put], RunnableConfig]:
        """``put``'s writes, and the config it answers."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        values, dumps = checkpoint["channel_values"], self.serde.dumps_typed
        blobs = [
            (thread_id, ns, channel, str(version), *dumps(values[channel]))
            for channel, version in new_versions.items()
            if channel in values
        ]
        row = (
            thread_id,
            ns,
            checkpoint["id"],
            conf.get("checkpoint_id"),
            sql.dump_json({k: v for k, v in checkpoint.items() if k != "channel_values"}),
            sql.dump_metadata(get_serializable_checkpoint_metadata(config, metadata)),
        )
        return [self.statements.put(blobs, row)], _config(thread_id, ns, checkpoint["id"])

    def _writes_batch(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> tuple[builtins.list[sql.TaskWrites], None]:
        """``put_writes``'s writes (none for no writes)."""
        conf = config["configurable"]
        key = (
            str(conf["thread_id"]),
            conf.get("checkpoint_ns", ""),
            conf["checkpoint_id"],
            task_id,
            task_path,
        )
        regular, special = [], {}
        for idx, (channel, value) in enumerate(writes):
            row = (*key, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
            if row[5] < 0:
                special[row[5]] = row  # one row per key: an upsert can't touch a row twice
            else:
                regular.append(row)
        statements = self.statements
        inserts = [
            *statements.inserts(statements.insert_writes, regular),
            *statements.inserts(statements.upsert_writes, builtins.list(special.values())),
        ]
        return ([sql.TaskWrites(key[:4], inserts)] if inserts else []), None

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Zero-padded counter plus a random fraction, as the Postgres saver: sortable as text."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    def _write(self, batch: builtins.list[sql.Write]) -> None:
        """``batch`` in one write transaction, behind the write guard if there is one."""
        statements = self.statements.transaction(batch, self.write_guard())
        with self.write_transaction():
            sql.execute(self.using, statements)

    def write_guard(self) -> sql.Statement | None:
        """A SELECT sent with each write transaction's writes, in the same round trip, that
        fails the transaction with a database error when its writes must not land (it may
        travel inside a write, see ``sql.Statements.transaction``); none here (the run
        executor's saver checks its lease with one on Postgres)."""
        return None

    def write_transaction(self) -> AbstractContextManager[Any]:
        """The transaction of ``put`` and ``put_writes`` (Django's ``atomic``), entered before
        their first write; subclasses may add a guard to it (the run executor checks its
        lease there, so a stale worker writes nothing)."""
        return transaction.write_transaction(self.using, guarded=self.guarded_writes())

    def guarded_writes(self) -> bool:
        """Whether statements other than the saver's writes run in ``write_transaction`` (a
        subclass's guard): then a pipelined transaction begins explicitly (see
        ``transaction.PipelinedTransaction``). Assumed when a subclass overrides it."""
        return type(self).write_transaction is not DjangoCheckpointSaver.write_transaction

    # ------------------------------------------------------------------ async

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._in_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Pull the sync iterator one page per worker call, so long histories stream."""
        tuples = self.list(config, filter=filter, before=before, limit=limit)
        while page := await self._in_thread(_take, tuples, self.list_page_size):
            for checkpoint_tuple in page:
                yield checkpoint_tuple

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: LangGraphCheckpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._coalesced(self._put_batch, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._coalesced(self._writes_batch, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._in_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._in_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._in_thread(functools.partial(self.prune, strategy=strategy), thread_ids)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._workers().run(fn, *args)

    async def _coalesced(self, prepare: Callable[..., tuple[builtins.list[sql.Statement], T]], *args: Any) -> T:
        """An async write, queued on this saver: one job on the worker threads writes every
        write queued by then in one transaction, and the writes queued meanwhile in the next.

        The Pregel loop issues a step's writes and its checkpoint concurrently (durability
        "async" chains only the checkpoints), so a run's writes mostly travel in pairs: fewer
        transactions, thread hops and connection checkouts, while each write still answers
        only once committed. A failure fails every write of its transaction."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._queue_lock:
            self._queued.append((prepare, args, loop, future))
            idle, self._flushing = not self._flushing, True
        if idle:
            self._start_flush(loop)
        return await future

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have the queued writes written: on a worker thread, as the loop may be shared by
        work that must not wait for the database (a subclass whose loop serves one graph
        alone may write on it)."""
        self._workers().submit(self._flush)

    def _flush(self) -> None:
        """In a worker thread (or, see ``_start_flush``, in the thread of the writes'
        callers' loop): write what is queued, until nothing is."""
        while True:
            with self._queue_lock:
                taken, self._queued = self._queued, []
                if not taken:
                    self._flushing = False
                    return
            taken = [write for write in taken if not write[3].cancelled()]  # callers gone: skipped
            results: builtins.list[Any] = []
            error: BaseException | None = None
            try:
                batch: builtins.list[sql.Write] = []
                for prepare, args, _, _ in taken:
                    statements, result = prepare(*args)
                    batch += statements
                    results.append(result)
                if batch:
                    self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                error = exc
                if running_loop() is None:  # a worker thread's connection
                    release_connections()  # checked before the next write uses it
            for index, (_, _, loop, future) in enumerate(taken):
                settle(loop, future, results[index] if error is None else None, error)

    @classmethod
    def _workers(cls) -> Workers:
        """The process's worker threads, started on first use (and again in a forked child)."""
        base = DjangoCheckpointSaver
        pool = base._pool
        if pool is not None and pool[0] == os.getpid():
            return pool[1]
        with base._pool_lock:
            if base._pool is None or base._pool[0] != os.getpid():
                size = 1 if connections["default"].vendor == "sqlite" else cls.max_workers
                base._pool = (os.getpid(), Workers(size, "checkpointer"))
            return base._pool[1]


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _after(row: Row) -> Q:
    """Rows after ``row`` in ``list`` order (checkpoint_id, namespace, thread; descending)."""
    thread_id, ns, checkpoint_id = row[:3]
    same_id = Q(checkpoint_id=checkpoint_id)
    return (
        Q(checkpoint_id__lt=checkpoint_id)
        | (same_id & Q(checkpoint_ns__lt=ns))
        | (same_id & Q(checkpoint_ns=ns, thread_id__lt=thread_id))
    )


def _bytes(blob: Any) -> bytes:
    """Drivers return bytes (psycopg, sqlite3) or a buffer; the serializer wants bytes."""
    return blob if type(blob) is bytes else bytes(blob)


def _take(items: Iterator[T], count: int) -> builtins.list[T]:
    return builtins.list(islice(items, count))
