"""LangGraph checkpointer on the Django ORM, with the schema of langgraph-checkpoint-postgres.

A checkpoint row holds the checkpoint without its channel values; each value is a
``CheckpointBlob`` keyed by (channel, version) and written only when ``put`` is told the
version is new, so an unchanged message history is stored once, not at every step.
Pending writes are keyed by (checkpoint, task, idx) and inserted with conflicts ignored,
so retried tasks are idempotent; writes to special channels (``WRITES_IDX_MAP``) use
negative indexes and are upserted.

Async methods run the sync ones on a small thread pool shared by every saver of the
process (not ``sync_to_async(thread_sensitive=True)``, which would queue every run of a
worker behind one thread); each pool thread has its own database connection, recycled
as Django recycles a request's (``CONN_MAX_AGE``, health checks).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import operator
import os
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, ClassVar, TypeVar

from django.db import connections, models, transaction
from django.db.models import Max, Q
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

from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite

T = TypeVar("T")
Group = tuple[str, str]  # (thread_id, checkpoint_ns)

TABLES: tuple[type[models.Model], ...] = (Checkpoint, CheckpointBlob, CheckpointWrite)
WRITE_KEY = ["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"]
BLOB_FIELDS = ("thread_id", "checkpoint_ns", "channel", "version", "type", "blob")
# The checkpoint's key, then a PendingWrite's fields, then its sort key's.
WRITE_FIELDS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "task_id",
    "channel",
    "type",
    "blob",
    "task_path",
    "idx",
)
PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys LangGraph leaves on threads whose graph uses a DeltaChannel.
DELTA_METADATA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")
# Separates a subgraph call's node from its task id in a namespace ("node:task_id").
NS_END = ":"
BATCH = 500  # rows per statement when the id lists can be long (SQLite caps parameters)


class DjangoCheckpointSaver(BaseCheckpointSaver[str]):
    """A ``BaseCheckpointSaver`` on the ``using`` database; sync and async."""

    list_page_size: ClassVar[int] = 100
    # Every pool thread holds a database connection: this bounds them per process.
    max_workers: ClassVar[int] = 8
    _pool: ClassVar[tuple[int, ThreadPoolExecutor] | None] = None
    _pool_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, using: str = "default", *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.using = using

    # ------------------------------------------------------------------ reads

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config``, else the latest of its thread and namespace.

        Three queries: the row, its blobs, its pending writes.
        """
        conf = config["configurable"]
        rows = self._rows().filter(
            thread_id=str(conf["thread_id"]), checkpoint_ns=conf.get("checkpoint_ns", "")
        )
        if checkpoint_id := get_checkpoint_id(config):
            rows = rows.filter(checkpoint_id=checkpoint_id)
        row = rows.order_by("-checkpoint_id").first()
        return self._load_tuples([row])[0] if row else None

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
            page = list(rows[:size])
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
            rows = rows.alias(**{alias: KeyTransform(_strip_nul(key), "metadata")})
            rows = rows.filter(**{alias: _strip_nul(value)})
        return rows.order_by("-checkpoint_id", "-checkpoint_ns", "-thread_id")

    def _load_tuples(self, rows: Sequence[Checkpoint]) -> builtins.list[CheckpointTuple]:
        """Tuples for ``rows``, with their blobs and writes in one query each."""
        if not rows:
            return []
        blobs = self._fetch_blobs(rows)
        writes = self._fetch_writes(rows)
        return [self._make_tuple(row, blobs, writes) for row in rows]

    def _fetch_blobs(self, rows: Sequence[Checkpoint]) -> dict[tuple[str, ...], tuple[str, bytes]]:
        """Serialized values of the rows' channel versions, by (thread, ns, channel, version)."""
        wanted: dict[Group, set[tuple[str, str]]] = defaultdict(set)
        for row in rows:
            for channel, version in row.checkpoint.get("channel_versions", {}).items():
                wanted[(row.thread_id, row.checkpoint_ns)].add((channel, str(version)))
        if not wanted:
            return {}
        where = _any(
            Q(
                thread_id=thread_id,
                checkpoint_ns=ns,
                channel__in={c for c, _ in pairs},
                version__in={v for _, v in pairs},
            )
            for (thread_id, ns), pairs in wanted.items()
        )
        found: dict[tuple[str, ...], tuple[str, bytes]] = {}
        for thread_id, ns, channel, version, type_, blob in (
            self._objects(CheckpointBlob).filter(where).values_list(*BLOB_FIELDS)
        ):
            # The IN lists cross channels and versions: keep only the exact pairs.
            if (channel, version) in wanted[(thread_id, ns)] and type_ != "empty":
                found[(thread_id, ns, channel, version)] = (type_, bytes(blob))
        return found

    def _fetch_writes(self, rows: Sequence[Checkpoint]) -> dict[tuple[str, ...], builtins.list[tuple]]:
        """Pending writes of the rows, by (thread, ns, checkpoint_id), in ``writes_sort_key`` order."""
        ids: dict[Group, set[str]] = defaultdict(set)
        for row in rows:
            ids[(row.thread_id, row.checkpoint_ns)].add(row.checkpoint_id)
        where = _any(
            Q(thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__in=checkpoint_ids)
            for (thread_id, ns), checkpoint_ids in ids.items()
        )
        found: dict[tuple[str, ...], builtins.list[tuple]] = defaultdict(list)
        for write in self._objects(CheckpointWrite).filter(where).values_list(*WRITE_FIELDS):
            found[write[:3]].append(write[3:])
        for writes in found.values():
            writes.sort(key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        return found

    def _make_tuple(
        self,
        row: Checkpoint,
        blobs: dict[tuple[str, ...], tuple[str, bytes]],
        writes: dict[tuple[str, ...], builtins.list[tuple]],
    ) -> CheckpointTuple:
        """One tuple; values are deserialized per tuple so no two tuples share objects."""
        group = (row.thread_id, row.checkpoint_ns)
        checkpoint = dict(row.checkpoint)
        checkpoint["channel_values"] = {
            channel: self.serde.loads_typed(blobs[key])
            for channel, version in checkpoint.get("channel_versions", {}).items()
            if (key := (*group, channel, str(version))) in blobs
        }
        pending: builtins.list[PendingWrite] = [
            (task_id, channel, self.serde.loads_typed((type_, bytes(blob))))
            for task_id, channel, type_, blob, _, _ in writes.get((*group, row.checkpoint_id), [])
        ]
        parent = row.parent_checkpoint_id
        return CheckpointTuple(
            config=_config(*group, row.checkpoint_id),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=row.metadata,
            parent_config=_config(*group, parent) if parent else None,
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
        """
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        blobs = self._dump_blobs(thread_id, ns, checkpoint["channel_values"], new_versions)
        row = Checkpoint(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=conf.get("checkpoint_id"),
            checkpoint={k: v for k, v in checkpoint.items() if k != "channel_values"},
            # Postgres JSONB rejects NUL characters.
            metadata=_strip_nul(get_serializable_checkpoint_metadata(config, metadata)),
        )
        with self.write_transaction():
            self._objects(CheckpointBlob).bulk_create(blobs, ignore_conflicts=True)
            self._objects(Checkpoint).bulk_create(
                [row],
                update_conflicts=True,
                update_fields=["checkpoint", "metadata"],
                unique_fields=["thread_id", "checkpoint_ns", "checkpoint_id"],
            )
        return _config(thread_id, ns, checkpoint["id"])

    def _dump_blobs(
        self, thread_id: str, ns: str, values: dict[str, Any], new_versions: ChannelVersions
    ) -> builtins.list[CheckpointBlob]:
        """Blob rows for the new versions; a channel without a value (cleared) needs none."""
        blobs = []
        for channel, version in new_versions.items():
            if channel in values:
                type_, blob = self.serde.dumps_typed(values[channel])
                blobs.append(
                    CheckpointBlob(
                        thread_id=thread_id,
                        checkpoint_ns=ns,
                        channel=channel,
                        version=str(version),
                        type=type_,
                        blob=blob,
                    )
                )
        return blobs

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes: regular ones insert-or-ignore, special channels upserted."""
        conf = config["configurable"]
        key = {
            "thread_id": str(conf["thread_id"]),
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "checkpoint_id": conf["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
        }
        regular, special = [], {}
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            write = CheckpointWrite(
                **key, idx=WRITES_IDX_MAP.get(channel, idx), channel=channel, type=type_, blob=blob
            )
            if write.idx < 0:
                special[write.idx] = write  # one row per key: an upsert can't touch a row twice
            else:
                regular.append(write)
        with self.write_transaction():
            self._objects(CheckpointWrite).bulk_create(regular, ignore_conflicts=True)
            self._objects(CheckpointWrite).bulk_create(
                list(special.values()),
                update_conflicts=True,
                unique_fields=WRITE_KEY,
                update_fields=["channel", "type", "blob", "task_path"],
            )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Zero-padded counter plus a random fraction, as the Postgres saver: sortable as text."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # ------------------------------------------------------------ deletions

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of the thread."""
        with transaction.atomic(using=self.using):
            for model in TABLES:
                self._objects(model).filter(thread_id=str(thread_id)).delete()

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is listed, their writes, and
        the blobs no remaining checkpoint uses."""
        run_ids = [str(run_id) for run_id in run_ids]
        if not run_ids:
            return
        with transaction.atomic(using=self.using):
            doomed = list(
                self._rows()
                .filter(metadata__run_id__in=run_ids)
                .values_list("pk", "thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint")
            )
            freed: dict[Group, set[tuple[str, str]]] = defaultdict(set)
            by_group: dict[Group, builtins.list[str]] = defaultdict(list)
            for _, thread_id, ns, checkpoint_id, checkpoint in doomed:
                by_group[(thread_id, ns)].append(checkpoint_id)
                freed[(thread_id, ns)] |= _versions(checkpoint.get("channel_versions"))
            for (thread_id, ns), checkpoint_ids in by_group.items():
                for batch in _batched(checkpoint_ids):
                    self._objects(CheckpointWrite).filter(
                        thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__in=batch
                    ).delete()
            for batch in _batched([pk for pk, *_ in doomed]):
                self._rows().filter(pk__in=batch).delete()
            self._collect_blobs(freed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of a thread to another, in one transaction."""
        source, target = str(source_thread_id), str(target_thread_id)
        with transaction.atomic(using=self.using):
            for model in TABLES:
                for chunk in _chunks(self._objects(model).filter(thread_id=source)):
                    for obj in chunk:
                        obj.pk, obj.thread_id = None, target  # type: ignore[attr-defined]
                    self._objects(model).bulk_create(chunk, ignore_conflicts=True)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"delete"`` removes the threads' rows; ``"keep_latest"`` keeps the latest
        checkpoint of each namespace with its writes and blobs (see ``_keep_latest``).

        ``keep_latest`` refuses threads that use a DeltaChannel, whose latest value is
        rebuilt from older checkpoints' writes.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        ids = [str(thread_id) for thread_id in thread_ids]
        if not ids:
            return
        if strategy == "delete":
            with transaction.atomic(using=self.using):
                for model in TABLES:
                    self._objects(model).filter(thread_id__in=ids).delete()
            return
        self._refuse_delta_threads(ids)
        for thread_id in ids:
            with transaction.atomic(using=self.using):
                self._keep_latest(thread_id)

    def _refuse_delta_threads(self, thread_ids: builtins.list[str]) -> None:
        has_delta = functools.reduce(operator.or_, (Q(metadata__has_key=k) for k in DELTA_METADATA_KEYS))
        rows = self._rows().filter(has_delta, thread_id__in=thread_ids)
        if delta := sorted(set(rows.values_list("thread_id", flat=True))):
            raise NotImplementedError(f"keep_latest can't prune threads that use a DeltaChannel: {delta}")

    def _keep_latest(self, thread_id: str) -> None:
        """Prune one thread, keeping each namespace's latest checkpoint.

        1. Find the latest checkpoint ("head") of every namespace.
        2. Delete subgraph-call namespaces whose call started from a root checkpoint older
           than the root head: the call is over and its root checkpoint goes now.
        3. In every other namespace delete checkpoints (and writes) older than the head, so
           a checkpoint a run saves meanwhile (a newer id) is never touched, and detach the
           head from its deleted parent.
        4. Delete the blobs that only deleted checkpoints used.
        """
        heads = dict(
            self._rows()
            .filter(thread_id=thread_id)
            .values("checkpoint_ns")
            .annotate(head=Max("checkpoint_id"))
            .values_list("checkpoint_ns", "head")
        )
        calls = self._finished_calls(thread_id, heads)
        if calls:
            for model in TABLES:
                self._objects(model).filter(thread_id=thread_id, checkpoint_ns__in=calls).delete()
        freed = {
            (thread_id, ns): self._delete_before(thread_id, ns, head)
            for ns, head in heads.items()
            if ns not in calls
        }
        self._collect_blobs(freed)

    def _delete_before(self, thread_id: str, ns: str, head: str) -> set[tuple[str, str]]:
        """Delete a namespace's checkpoints older than ``head`` with their writes; return
        the (channel, version) pairs they used."""
        older = self._rows().filter(thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__lt=head)
        freed = set().union(*_channel_versions(older))
        self._objects(CheckpointWrite).filter(
            thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__lt=head
        ).delete()
        older.delete()
        self._rows().filter(
            thread_id=thread_id, checkpoint_ns=ns, checkpoint_id=head, parent_checkpoint_id__lt=head
        ).update(parent_checkpoint_id=None)
        return freed

    def _finished_calls(self, thread_id: str, heads: dict[str, str]) -> set[str]:
        """Subgraph-call namespaces (``node:task_id``) whose root checkpoint is saved and
        older than the root head. A ``checkpointer=True`` subgraph's namespace has no task
        id, so its history outlives each call and is only pruned to its head."""
        root_head = heads.get("")
        call_heads = {heads[ns] for ns in heads if NS_END in ns}
        if root_head is None or not call_heads:
            return set()
        roots = {
            row.checkpoint_ns: (row.metadata.get("parents") or {}).get("")
            for row in self._rows()
            .filter(thread_id=thread_id, checkpoint_id__in=call_heads)
            .only("checkpoint_ns", "checkpoint_id", "metadata")
            if NS_END in row.checkpoint_ns and heads[row.checkpoint_ns] == row.checkpoint_id
        }
        saved = set(
            self._rows()
            .filter(thread_id=thread_id, checkpoint_ns="", checkpoint_id__in=[r for r in roots.values() if r])
            .values_list("checkpoint_id", flat=True)
        )
        return {ns for ns, root in roots.items() if root in saved and str(root) < root_head}

    def _collect_blobs(self, freed: dict[Group, set[tuple[str, str]]]) -> None:
        """Delete the freed (channel, version) blobs that no remaining checkpoint uses."""
        for (thread_id, ns), candidates in freed.items():
            remaining = self._rows().filter(thread_id=thread_id, checkpoint_ns=ns)
            garbage = candidates.difference(*_channel_versions(remaining))
            for batch in _batched(sorted(garbage)):
                self._objects(CheckpointBlob).filter(
                    _any(Q(channel=channel, version=version) for channel, version in batch),
                    thread_id=thread_id,
                    checkpoint_ns=ns,
                ).delete()

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
        """Pull the sync iterator one page per pool call, so long histories stream."""
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
        return await self._in_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._in_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._in_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._in_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._in_thread(functools.partial(self.prune, strategy=strategy), thread_ids)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._with_connection, fn, *args)

    def _with_connection(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a pool thread, recycling its connection as Django does per request."""
        connection = connections[self.using]
        connection.close_if_unusable_or_obsolete()
        try:
            return fn(*args)
        finally:
            connection.close_if_unusable_or_obsolete()

    @classmethod
    def _executor(cls) -> ThreadPoolExecutor:
        """The process's pool, created on first use (and again in a forked child)."""
        base = DjangoCheckpointSaver
        with base._pool_lock:
            if base._pool is None or base._pool[0] != os.getpid():
                base._pool = (os.getpid(), ThreadPoolExecutor(cls.max_workers, "checkpointer"))
            return base._pool[1]

    # ---------------------------------------------------------------- helpers

    def write_transaction(self) -> transaction.Atomic:
        """The transaction of ``put`` and ``put_writes``; subclasses may add a guard to it
        (the run executor checks its lease there, so a stale worker writes nothing)."""
        return transaction.atomic(using=self.using)

    def _objects(self, model: type[models.Model]) -> models.QuerySet[Any]:
        return model._default_manager.using(self.using).all()

    def _rows(self) -> models.QuerySet[Checkpoint]:
        return self._objects(Checkpoint)


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _after(row: Checkpoint) -> Q:
    """Rows after ``row`` in ``list`` order (checkpoint_id, namespace, thread; descending)."""
    same_id = Q(checkpoint_id=row.checkpoint_id)
    return (
        Q(checkpoint_id__lt=row.checkpoint_id)
        | (same_id & Q(checkpoint_ns__lt=row.checkpoint_ns))
        | (same_id & Q(checkpoint_ns=row.checkpoint_ns, thread_id__lt=row.thread_id))
    )


def _strip_nul(value: Any) -> Any:
    """``value`` without NUL characters in any string, key or nested item."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_nul(v) for v in value]
    return value


def _versions(channel_versions: dict[str, Any] | None) -> set[tuple[str, str]]:
    return {(channel, str(version)) for channel, version in (channel_versions or {}).items()}


def _channel_versions(rows: models.QuerySet[Checkpoint]) -> Iterator[set[tuple[str, str]]]:
    """The (channel, version) pairs of each row, reading only ``channel_versions``."""
    for versions in rows.annotate(_v=KeyTransform("channel_versions", "checkpoint")).values_list(
        "_v", flat=True
    ):
        yield _versions(versions)


def _any(conditions: Iterable[Q]) -> Q:
    return functools.reduce(operator.or_, conditions, Q(pk__in=[]))


def _batched(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _chunks(rows: models.QuerySet[Any], size: int = BATCH) -> Iterator[list[Any]]:
    """``rows`` in primary-key pages, so a large thread is never held in memory at once."""
    last = 0
    while chunk := list(rows.filter(pk__gt=last).order_by("pk")[:size]):
        last = chunk[-1].pk
        yield chunk


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(islice(items, count))
