"""Handing work to a worker: the ``celery`` dispatcher, or the in-process pool of ``manage.py dev``.

The ``celery`` dispatcher pushes a run that may start now onto a Redis list that the
workers' feeders pop (``runs.feeder``: why not a Celery message each), and sends a Celery
message for a run that must wait and for a webhook. Either only says "look at this run":
the database claim in the executor decides whether anything executes, so a duplicate is
harmless. Every path ends in ``execute_and_follow_up``, which runs the attempt and then
sends what it asks for next (the thread's next enqueued run, the webhook).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from agentserver.conf import server_settings
from agentserver.events import KEY_PREFIX, CommandSender
from runs import webhooks
from runs.executor import execute_run

logger = logging.getLogger(__name__)

EXECUTE_TASK = "runs.tasks.execute_run"
WEBHOOK_TASK = "runs.tasks.deliver_webhook"
# The ids of runs that may start now, oldest at the right (LPUSH, popped from the right).
READY_QUEUE = f"{KEY_PREFIX}runs:ready"
PUSH_TIMEOUT_SECONDS = 10


@lru_cache(maxsize=1)
def _pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="agentserver-run")


@lru_cache(maxsize=1)
def _sender(url: str) -> CommandSender:
    # A Redis that stops answering fails the push (the sweep sends the run later) instead
    # of holding the request's thread for good.
    return CommandSender(redis.ConnectionPool.from_url(url, socket_timeout=PUSH_TIMEOUT_SECONDS))


def run_logged(function: Any, *args: Any) -> None:
    """A job on a thread of ours: its failure is logged, its database connection given back."""
    try:
        function(*args)
    except Exception:
        logger.exception("Job %s failed", getattr(function, "__name__", function))
    finally:
        close_old_connections()  # back to the pool; SQLite's stays open


def _in_pool(function: Any, *args: Any) -> None:
    _pool(server_settings.INPROCESS_WORKERS).submit(run_logged, function, *args)


def dispatch_run(run_id: str, *, delay: float = 0) -> None:
    """Ask a worker to execute ``run_id`` (not before ``delay`` seconds). Call after commit."""
    if server_settings.DISPATCHER == "celery":
        if delay > 0:
            current_app.send_task(EXECUTE_TASK, args=[str(run_id)], countdown=delay)
        else:
            _sender(settings.REDIS_URL).send([("LPUSH", READY_QUEUE, str(run_id))])
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
