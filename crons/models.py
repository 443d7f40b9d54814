"""Crons: our table is the only truth about schedules."""

from __future__ import annotations

import uuid

from django.db import models

from threads.models import Thread


class Cron(models.Model):
    cron_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    assistant_id = models.UUIDField()
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, null=True, blank=True, related_name="crons")
    user_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (null: no owner, as the API reports)
    schedule = models.CharField(max_length=255)
    timezone = models.CharField(max_length=64, default="UTC")
    end_time = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    on_run_completed = models.CharField(max_length=16, default="delete")
    payload = models.JSONField(default=dict, blank=True)
    next_run_date = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The beat task: enabled crons that are due.
        indexes = [models.Index(fields=["enabled", "next_run_date"], name="cron_due_idx")]

    def __str__(self) -> str:
        return f"{self.schedule} ({self.cron_id})"
