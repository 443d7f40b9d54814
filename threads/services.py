"""Thread lifecycle and search (api-reference §1.3, §3.9): plain functions the views call.

Checkpoints live in their own tables keyed by thread id (no foreign key), so every function
that creates, copies or removes threads keeps them in step through the checkpointer, in the
same transaction as the thread rows.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone
from langchain_core.utils.uuid import uuid7

from agentserver.config import get_config
from agentserver.errors import conflict, not_found, parse_uuid, unprocessable
from agentserver.jsonquery import json_contains
from agentserver.rows import fetch_by_key, insert_row
from threads.checkpointer import DjangoCheckpointSaver
from threads.models import Thread, ThreadStatus, ThreadTally
from threads.serializers import select_thread_fields, thread_wire
from threads.state import apply_supersteps

MISSING = object()


# ------------------------------------------------------------------ lookups


def get_thread(thread_id: Any) -> Thread:
    """The thread or the reference's 404; a malformed id is a 422."""
    pk = parse_uuid(thread_id, "thread")
    thread = fetch_by_key(Thread, thread_id=pk)
    if thread is None:
        raise not_found(f"Thread with ID {pk} not found")
    return thread


# ------------------------------------------------------------------ TTL


def default_ttl() -> dict[str, Any] | None:
    """The deployment default from ``checkpointer.ttl`` in the config, for threads created without one."""
    ttl = get_config().section("checkpointer").get("ttl") or {}
    minutes = ttl.get("default_ttl") if isinstance(ttl, dict) else None
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes <= 0:
        return None
    return {"minutes": float(minutes), "strategy": ttl.get("strategy") or "delete"}


def ttl_fields(ttl: dict[str, Any] | None) -> dict[str, Any]:
    """Columns for a TTL; expiry counts from the moment the TTL is set (§3.9, our choice)."""
    if not ttl:
        return {}
    return {
        "ttl_minutes": ttl["minutes"],
        "ttl_strategy": ttl["strategy"],
        "expires_at": timezone.now() + timedelta(minutes=ttl["minutes"]),
    }


# ------------------------------------------------------------------ create / update / delete


def create_thread(
    *,
    thread_id: Any = None,
    metadata: dict[str, Any] | None = None,
    if_exists: str | None = None,
    ttl: dict[str, Any] | None = None,
    supersteps: list[dict[str, Any]] | None = None,
) -> Thread:
    """Create a thread, or return the existing one with ``if_exists="do_nothing"``.

    The primary key decides whether the id exists (no check-then-insert race). Supersteps are
    replayed in the same transaction, so a bad update leaves no thread behind.
    """
    pk = parse_uuid(thread_id, "thread") if thread_id else uuid7()
    try:
        # A lone INSERT outside a transaction needs none (two round trips fewer); inside one,
        # a savepoint keeps a duplicate id from breaking it.
        lone = not supersteps and not transaction.get_connection().in_atomic_block
        with contextlib.nullcontext() if lone else transaction.atomic():
            thread = insert_row(
                Thread(thread_id=pk, metadata=metadata or {}, **ttl_fields(ttl or default_ttl())),
                Thread.objects.db,
            )
            if supersteps:
                apply_supersteps(thread, supersteps)
                thread.refresh_from_db()
    except IntegrityError:
        existing = Thread.objects.filter(pk=pk).first()
        if existing is None:
            raise
        if if_exists == "do_nothing":
            return existing
        raise conflict(f"Thread with ID {pk} already exists") from None
    return thread


def patch_thread(thread_id: Any, *, metadata: dict[str, Any] | None = None, ttl: Any = MISSING) -> Thread:
    """Merge ``metadata`` into the thread's and (re)set its TTL, under a row lock (no lost merges)."""
    pk = parse_uuid(thread_id, "thread")
    with transaction.atomic():
        thread = Thread.objects.select_for_update().filter(pk=pk).first()
        if thread is None:
            raise not_found(f"Thread with ID {pk} not found")
        if metadata:
            thread.metadata = {**(thread.metadata or {}), **metadata}
        if ttl is not MISSING and ttl:
            for field, value in ttl_fields(ttl).items():
                setattr(thread, field, value)
        thread.save()
    return thread


def delete_thread(thread_id: Any) -> None:
    """Delete the thread, its runs and crons (foreign keys) and its checkpoints."""
    pk = parse_uuid(thread_id, "thread")
    with transaction.atomic():
        deleted, _ = Thread.objects.filter(pk=pk).delete()
        if not deleted:
            raise not_found(f"Thread with ID {pk} not found")
        DjangoCheckpointSaver().delete_thread(str(pk))


def copy_thread(thread_id: Any) -> Thread:
    """A new thread with the source's metadata, state columns and every checkpoint.

    A missing source is a 409, as the reference answers.
    """
    pk = parse_uuid(thread_id, "thread")
    with transaction.atomic():
        source = Thread.objects.filter(pk=pk).first()
        if source is None:
            raise conflict(f"Thread with ID {pk} not found")
        copy = Thread.objects.create(
            thread_id=uuid7(),
            metadata=dict(source.metadata or {}),
            config=dict(source.config or {}),
            status=ThreadStatus.IDLE if source.status == ThreadStatus.BUSY else source.status,
            values=source.values,
            interrupts=source.interrupts,
            error=source.error,
            state_updated_at=source.state_updated_at,
            **ttl_fields(default_ttl()),
        )
        DjangoCheckpointSaver().copy_thread(str(pk), str(copy.thread_id))
    return copy


def prune_threads(thread_ids: list[Any], strategy: str = "delete") -> int:
    """``delete`` removes threads with their checkpoints; ``keep_latest`` keeps each thread's latest checkpoint.

    Returns how many of the named threads existed.
    """
    pks = [parse_uuid(tid, "thread") for tid in thread_ids]
    with transaction.atomic():
        existing = [str(pk) for pk in Thread.objects.filter(pk__in=pks).values_list("thread_id", flat=True)]
        if not existing:
            return 0
        if strategy == "delete":
            Thread.objects.filter(pk__in=existing).delete()
        try:
            DjangoCheckpointSaver().prune(existing, strategy=strategy)
        except NotImplementedError as exc:  # keep_latest on a thread whose channels need history
            raise unprocessable(str(exc)) from None
    return len(existing)


# ------------------------------------------------------------------ search


def filter_threads(
    *,
    ids: list[Any] | None = None,
    metadata: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    status: str | None = None,
) -> QuerySet[Thread]:
    queryset = Thread.objects.all()
    if ids:
        queryset = queryset.filter(pk__in=[parse_uuid(tid, "thread") for tid in ids])
    if metadata:
        queryset = queryset.filter(json_contains("metadata", metadata))
    if values:
        queryset = queryset.filter(json_contains("values", values))
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def count_threads(**filters: Any) -> int:
    return _count_matching(filter_threads(**filters), filters)


def _count_matching(queryset: QuerySet[Thread], filters: dict[str, Any]) -> int:
    """How many threads ``queryset`` (built from ``filters``) holds; with no filter, ``thread_total``."""
    return queryset.count() if any(filters.values()) else thread_total()


def thread_total() -> int:
    """How many threads exist: the tally the database keeps (``ThreadTally``), rather than a
    count of every row."""
    return ThreadTally.objects.aggregate(total=Sum("threads"))["total"] or 0


def search_threads(
    *,
    limit: int = 10,
    offset: int = 0,
    sort_by: str | None = None,
    sort_order: str | None = None,
    select: list[str] | None = None,
    extract: dict[str, list[str | int]] | None = None,
    **filters: Any,
) -> tuple[list[dict[str, Any]], int]:
    """One page of Thread objects (most recently updated first by default) and the total count."""
    queryset = filter_threads(**filters)
    field = sort_by or "updated_at"
    column = F(field)
    descending = (sort_order or "desc") == "desc"
    if Thread._meta.get_field(field).null:  # state_updated_at: never-run threads go last
        order = column.desc(nulls_last=True) if descending else column.asc(nulls_first=True)
    else:  # a plain order, which thread_search_idx serves
        order = column.desc() if descending else column.asc()
    tiebreak = "-thread_id" if descending else "thread_id"
    total = _count_matching(queryset, filters)
    page = list(queryset.order_by(order, tiebreak)[offset : offset + limit])
    return [_search_item(thread, select, extract) for thread in page], total


def _search_item(
    thread: Thread, select: list[str] | None, extract: dict[str, list[str | int]] | None
) -> dict:
    data = thread_wire(thread)
    item = select_thread_fields(data, select)
    if extract:
        item["extracted"] = {alias: extract_path(data, path) for alias, path in extract.items()}
    return item


def extract_path(data: Any, path: list[str | int]) -> Any:
    """Follow a parsed extract path; a missing key or index gives None rather than an error."""
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and -len(data) <= part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data
