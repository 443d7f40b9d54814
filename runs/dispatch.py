"""Handing work to a worker: a Celery message, or the in-process pool of ``manage.py dev``.

A message only says "look at this run": the database claim in the executor decides
whether anything executes, so a duplicate message is harmless. Both dispatchers end in
``execute_and_follow_up``, which runs the attempt and then sends what it asks for next
(the thread's next enqueued run, the webhook).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from celery import current_app
from django.db import close_old_connections

from agentserver.conf import server_settings
from runs import webhooks
from runs.executor import execute_run

logger = logging.getLogger(__name__)

EXECUTE_TASK = "runs.tasks.execute_run"
WEBHOOK_TASK = "runs.tasks.deliver_webhook"


@lru_cache(maxsize=1)
def _pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="agentserver-run")


def _in_pool(function: Any, *args: Any) -> None:
    def job() -> None:
        try:
            function(*args)
        except Exception:
            logger.exception("In-process job %s failed", getattr(function, "__name__", function))
        finally:
            close_old_connections()  # back to the pool; SQLite's stays open

    _pool(server_settings.INPROCESS_WORKERS).submit(job)


def dispatch_run(run_id: str, *, delay: float = 0) -> None:
    """Ask a worker to execute ``run_id`` (not before ``delay`` seconds). Call after commit."""
    if server_settings.DISPATCHER == "celery":
        current_app.send_task(EXECUTE_TASK, args=[str(run_id)], countdown=delay or None)
    elif delay > 0:
        timer = threading.Timer(delay, _in_pool, args=(execute_and_follow_up, str(run_id)))
        timer.daemon = True
        timer.start()
    else:
        _in_pool(execute_and_follow_up, str(run_id))


def dispatch_webhook(url: str, payload: dict) -> None:
    if server_settings.DISPATCHER == "celery":
        current_app.send_task(WEBHOOK_TASK, args=[url, payload])
    else:
        _in_pool(webhooks.deliver_webhook, url, payload)


def execute_and_follow_up(run_id: str) -> None:
    outcome = execute_run(run_id)
    if outcome is None:
        return
    if outcome.webhook:
        dispatch_webhook(*outcome.webhook)
    for next_run_id in outcome.next_run_ids:
        dispatch_run(next_run_id)
