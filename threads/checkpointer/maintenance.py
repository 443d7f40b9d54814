"""Deleting, copying and pruning checkpoints: rare, bulk operations, so on the ORM."""

from __future__ import annotations

import builtins
import functools
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import Max, Q
from django.db.models.fields.json import KeyTransform

from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite

T = TypeVar("T")
Group = tuple[str, str]  # (thread_id, checkpoint_ns)

TABLES: tuple[type[models.Model], ...] = (Checkpoint, CheckpointBlob, CheckpointWrite)
PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys LangGraph leaves on threads whose graph uses a DeltaChannel.
DELTA_METADATA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")
# Separates a subgraph call's node from its task id in a namespace ("node:task_id").
NS_END = ":"
BATCH = 500  # rows per statement when the id lists can be long (SQLite caps parameters)


class Maintenance:
    """``delete_thread``, ``delete_for_runs``, ``copy_thread`` and ``prune`` of the saver."""

    using: str

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

    def _objects(self, model: type[models.Model]) -> models.QuerySet[Any]:
        return model._default_manager.using(self.using).all()

    def _rows(self) -> models.QuerySet[Checkpoint]:
        return self._objects(Checkpoint)


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


def _chunks(rows: models.QuerySet[Any], size: int = BATCH) -> Iterator[builtins.list[Any]]:
    """``rows`` in primary-key pages, so a large thread is never held in memory at once."""
    last = 0
    while chunk := builtins.list(rows.filter(pk__gt=last).order_by("pk")[:size]):
        last = chunk[-1].pk
        yield chunk
