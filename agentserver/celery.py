"""The Celery application: workers execute runs, beat fires crons and sweeps."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentserver.settings")

app = Celery("agentserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
