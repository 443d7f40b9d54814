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
            # threads.search default order: most recently updated first.
            models.Index(fields=["-updated_at"], name="thread_updated_idx"),
            # threads.search(status=...) and the count endpoint.
            models.Index(fields=["status", "-updated_at"], name="thread_status_idx"),
            # The TTL sweep: threads whose expiry has passed.
            models.Index(
                fields=["expires_at"], name="thread_expiry_idx", condition=Q(expires_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return str(self.thread_id)


class Checkpoint(models.Model):
    thread_id = models.CharField(max_length=255)
    checkpoint_ns = models.CharField(max_length=255, blank=True, default="")
    checkpoint_id = models.CharField(max_length=64)
    parent_checkpoint_id = models.CharField(max_length=64, null=True, blank=True)
    checkpoint = models.JSONField()
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "checkpoint_id"], name="checkpoint_key"
            )
        ]
        # get_tuple/list: newest checkpoint of a thread and namespace (ids sort by time).
        indexes = [models.Index(fields=["thread_id", "checkpoint_ns", "-checkpoint_id"], name="checkpoint_latest_idx")]


class CheckpointBlob(models.Model):
    thread_id = models.CharField(max_length=255)
    checkpoint_ns = models.CharField(max_length=255, blank=True, default="")
    channel = models.CharField(max_length=255)
    version = models.CharField(max_length=255)
    type = models.CharField(max_length=32)
    blob = models.BinaryField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "channel", "version"], name="checkpoint_blob_key"
            )
        ]


class CheckpointWrite(models.Model):
    thread_id = models.CharField(max_length=255)
    checkpoint_ns = models.CharField(max_length=255, blank=True, default="")
    checkpoint_id = models.CharField(max_length=64)
    task_id = models.CharField(max_length=255)
    task_path = models.CharField(max_length=1024, blank=True, default="")
    idx = models.IntegerField()
    channel = models.CharField(max_length=255)
    type = models.CharField(max_length=32)
    blob = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"],
                name="checkpoint_write_key",
            )
        ]


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
