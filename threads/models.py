"""Threads, LangGraph checkpoints and the long-term store, on the Django ORM.

The checkpoint tables mirror langgraph-checkpoint-postgres: one row per checkpoint
(without channel values), one blob per channel *version* (so a long message history is
stored once, not at every step), and pending writes keyed by task and index.
Checkpoint tables carry ``thread_id`` as text, not a foreign key: the checkpointer is
usable on its own (tests, tools) and a thread's checkpoints are deleted with it by
``DjangoCheckpointSaver.delete_thread``.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTransform


class ThreadStatus(models.TextChoices):
    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class Thread(models.Model):
    thread_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    state_updated_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ThreadStatus.choices, default=ThreadStatus.IDLE)
    # Denormalised from the latest checkpoint, for search and listing without a graph.
    values = models.JSONField(null=True, blank=True)
    interrupts = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    ttl_minutes = models.FloatField(null=True, blank=True)
    ttl_strategy = models.CharField(max_length=16, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # threads.search's default page: ORDER BY updated_at DESC, thread_id DESC.
            models.Index(fields=["-updated_at", "-thread_id"], name="thread_search_idx"),
            # (metadata filters: a GIN index on Postgres, created in migration 0003.)
            # threads.search(status=...) pages and counts.
            models.Index(fields=["status", "-updated_at", "-thread_id"], name="thread_status_search_idx"),
            # The TTL sweep: threads whose expiry has passed.
            models.Index(
                fields=["expires_at"], name="thread_expiry_idx", condition=Q(expires_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return str(self.thread_id)


class ThreadTally(models.Model):
    """How many threads exist, kept by triggers on ``threads_thread`` (migration 0004), so
    that an unfiltered ``threads.search`` or ``threads.count`` answers its total without
    counting every row: ``COUNT(*)`` reads the whole table, a cost that grows with it.

    The total is the sum of the rows. On Postgres a statement adds to the row of its
    connection's backend process (``pg_backend_pid() % 64``), so transactions that insert
    threads at the same time rarely wait for one row; SQLite has one writer and one row.
    """

    shard = models.SmallIntegerField(primary_key=True)
    threads = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"shard {self.shard}: {self.threads}"


class Checkpoint(models.Model):
    """One checkpoint without its channel values (those live in ``CheckpointBlob``).

    Key columns are text, as in langgraph-checkpoint-postgres: nested subgraph
    namespaces and task paths grow with depth, and a varchar limit would only fail on
    Postgres (SQLite ignores it).
    """

    thread_id = models.TextField()
    checkpoint_ns = models.TextField(blank=True, default="")
    checkpoint_id = models.TextField()
    # NULL for a first checkpoint, as upstream; prune also detaches a head from a deleted parent.
    parent_checkpoint_id = models.TextField(null=True, blank=True)  # noqa: DJ001
    checkpoint = models.JSONField()
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also serves get_tuple's "latest of a thread and namespace" (scanned
            # backwards) and delete_thread/prune (thread_id prefix).
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "checkpoint_id"], name="checkpoint_key"
            )
        ]
        indexes = [
            # delete_for_runs: checkpoints whose metadata names one of the runs (used on
            # Postgres; SQLite binds the JSON path as a parameter and scans).
            models.Index(KeyTransform("run_id", "metadata"), name="checkpoint_run_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}/{self.checkpoint_ns}/{self.checkpoint_id}"


class CheckpointBlob(models.Model):
    """One channel value at one version, shared by every checkpoint that has it."""

    thread_id = models.TextField()
    checkpoint_ns = models.TextField(blank=True, default="")
    channel = models.TextField()
    version = models.TextField()
    type = models.TextField()
    blob = models.BinaryField(null=True)

    class Meta:
        constraints = [
            # Idempotent puts (conflicts ignored) and the blob lookup of get_tuple/list.
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "channel", "version"], name="checkpoint_blob_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}/{self.checkpoint_ns}/{self.channel}@{self.version}"


class CheckpointWrite(models.Model):
    """A pending write of a task against a checkpoint; ``idx`` < 0 for special channels."""

    thread_id = models.TextField()
    checkpoint_ns = models.TextField(blank=True, default="")
    checkpoint_id = models.TextField()
    task_id = models.TextField()
    task_path = models.TextField(blank=True, default="")
    idx = models.IntegerField()
    channel = models.TextField()
    type = models.TextField()
    blob = models.BinaryField()

    class Meta:
        constraints = [
            # Idempotent put_writes under retries, and the writes lookup of get_tuple/list.
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"],
                name="checkpoint_write_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}/{self.checkpoint_ns}/{self.checkpoint_id}/{self.task_id}#{self.idx}"


class StoreItem(models.Model):
    """One item of the long-term store; ``namespace`` is the labels joined by '.'."""

    namespace = models.CharField(max_length=1024)
    key = models.CharField(max_length=1024)
    value = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ttl_minutes = models.FloatField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "key"], name="store_item_key")]
        indexes = [
            # The store TTL sweep.
            models.Index(
                fields=["expires_at"], name="store_expiry_idx", condition=Q(expires_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.key}"
