"""The Celery worker's run feeder: runs ready to start come off a Redis list, not a Celery message each.

Why: with the Redis transport, kombu's consume path (a fresh ``BRPOP`` per message, the
message envelope, the worker's request and strategy objects) cost ~30 % of the worker's CPU
for a one-node run, and ``send_task`` ~0.5 ms of the web's, against ~0.1 ms for an
``LPUSH``. A run id is all a run's dispatch carries (the claim in the executor decides
whether anything executes), so it needs none of that.

What stays with Celery: runs that must wait (``after_seconds``), webhooks, the sweeps and
crons. What the list shares with Celery's messages on Redis (ack emulation is off): an id
popped by a worker that dies before claiming it is gone, and the recovery sweep sends the
run again once it is ``PENDING_REDISPATCH_SECONDS`` overdue, as it does for a lost message.

The feeder takes an id only when one of its ``worker.concurrency`` threads is free, so the
ids it holds are runs it is executing; a warm shutdown stops taking ids and waits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from celery import bootsteps
from django.conf import settings

from agentserver.conf import server_settings
from runs.dispatch import READY_QUEUE, execute_and_follow_up, run_logged

logger = logging.getLogger(__name__)

# How long one pop blocks: bounds how long a shutdown waits for the feeder's thread.
POP_TIMEOUT_SECONDS = 1.0


class Feeder:
    """Pops ready run ids while it has free threads and executes them on those threads."""

    def __init__(self, url: str, threads: int) -> None:
        # A connection of its own, used by this feeder's thread alone: a pooled client's
        # checkout, retry and instrumentation layers cost more than the pop itself.
        self.connection = redis.ConnectionPool.from_url(url, socket_timeout=POP_TIMEOUT_SECONDS + 30).make_connection()
        self.free = threading.Semaphore(threads)
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agentserver-run")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, name="agentserver-feeder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, *, wait: bool) -> None:
        """Take no more runs; with ``wait``, return once the runs taken have finished."""
        self.stopping.set()
        self.thread.join()
        self.pool.shutdown(wait=wait)
        self.connection.disconnect()

    def _feed(self) -> None:
        while not self.stopping.is_set():
            taken = self._take_threads()
            if not taken:
                continue
            try:
                run_ids = self._pop(taken)
            except (redis.RedisError, OSError):
                logger.exception("Cannot read the queue of ready runs; retrying in 1 s")
                self.connection.disconnect()
                run_ids = []
                time.sleep(1)
            for run_id in run_ids:
                self.pool.submit(self._execute, run_id.decode())
            for _ in range(taken - len(run_ids)):
                self.free.release()

    def _pop(self, count: int) -> list[bytes]:
        """Up to ``count`` ids, oldest first; none if nothing came within the pop timeout."""
        self.connection.send_command("BLMPOP", POP_TIMEOUT_SECONDS, 1, READY_QUEUE, "RIGHT", "COUNT", count)
        popped = self.connection.read_response()
        return popped[1] if popped else []

    def _take_threads(self) -> int:
        """Wait (boundedly) for one free thread, then claim every other free one."""
        if not self.free.acquire(timeout=POP_TIMEOUT_SECONDS):
            return 0
        taken = 1
        while taken < self.threads and self.free.acquire(blocking=False):
            taken += 1
        return taken

    def _execute(self, run_id: str) -> None:
        try:
            run_logged(execute_and_follow_up, run_id)
        finally:
            self.free.release()


class RunFeeder(bootsteps.StartStopStep):
    """Runs a ``Feeder`` inside every Celery worker of the ``celery`` dispatcher."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.feeder: Feeder | None = None

    def include_if(self, worker: Any) -> bool:
        return server_settings.DISPATCHER == "celery"

    def create(self, worker: Any) -> RunFeeder:
        self.feeder = Feeder(settings.REDIS_URL, worker.concurrency)
        return self

    def start(self, worker: Any) -> None:
        assert self.feeder is not None
        self.feeder.start()

    def stop(self, worker: Any) -> None:
        if self.feeder is not None:
            self.feeder.stop(wait=True)

    def terminate(self, worker: Any) -> None:
        if self.feeder is not None:
            self.feeder.stop(wait=False)
