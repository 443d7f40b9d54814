"""The Celery application: workers execute runs, beat fires crons and sweeps."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentserver.settings")

app = Celery("agentserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Runs that may start now reach the workers through this step, not as Celery messages.
app.steps["worker"].add("runs.feeder:RunFeeder")


@worker_init.connect
def _load_graphs(**kwargs: object) -> None:
    """Import the configured graphs when a worker starts: a broken graph fails fast. And
    listen for cancel signals before the first run is claimed."""
    from agentserver.events import get_event_bus
    from agentserver.graphs import get_registry
    from agentserver.startup import freeze_startup_objects

    get_registry()
    get_event_bus().listen_for_cancels()
    freeze_startup_objects()
