"""Assistants (saved run configurations, versioned) and runs."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from threads.models import Thread


class Assistant(models.Model):
    assistant_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    graph_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, default="Untitled")
    description = models.TextField(null=True, blank=True)  # noqa: DJ001 (the API distinguishes null)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    version = models.IntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # assistants.search default order and graph_id filter.
            models.Index(fields=["graph_id", "-created_at"], name="assistant_graph_idx"),
            models.Index(fields=["-created_at"], name="assistant_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.graph_id})"


class AssistantVersion(models.Model):
    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="versions")
    version = models.IntegerField()
    graph_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)  # noqa: DJ001 (the API distinguishes null)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assistant", "version"], name="assistant_version_key")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)


class Run(models.Model):
    run_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="runs")
    assistant_id = models.UUIDField()
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    metadata = models.JSONField(default=dict, blank=True)
    # The frozen run spec: everything a worker needs to rebuild the job from the database.
    kwargs = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(max_length=16, default="enqueue")
    # Shifted forward by after_seconds: a run is not started before this time.
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Claim and lease: a fresh token per attempt fences every later write.
    attempt = models.IntegerField(default=0)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set when a cancel was requested: "interrupt" or "rollback".
    cancel_action = models.CharField(max_length=16, blank=True, default="")
    # What /wait and /join answer once the run is over: final values (with
    # __interrupt__) or {"__error__": ...}. Kept on the run, as the thread may move on.
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            # runs.list of a thread, newest first; picking the next enqueued run of a thread.
            models.Index(fields=["thread", "-created_at"], name="run_thread_idx"),
            # A thread's in-flight runs in queue order: admission's in-flight check, the claim's
            # "nothing ahead of it", next_queued_run. Stays small however long the history.
            models.Index(
                fields=["thread", "created_at"],
                name="run_thread_active_idx",
                condition=Q(status__in=["pending", "running"]),
            ),
            # The recovery sweep's expired leases. Only running runs: an index over all in-flight
            # runs not led by the thread would also serve the statements above, and Postgres
            # picks it for them when its statistics were taken with few runs pending (estimated
            # empty, it looks cheapest): each statement then reads the whole backlog.
            models.Index(
                fields=["lease_expires_at"],
                name="run_lease_idx",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return str(self.run_id)
