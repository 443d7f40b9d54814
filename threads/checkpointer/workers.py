"""The threads that run the saver's async methods.

Not ``sync_to_async(thread_sensitive=True)``, which would queue every run of a worker
behind one thread, and not a ``ThreadPoolExecutor`` around a per-call connection check:
a thread here keeps its database connections from job to job and hands them back
(``close_old_connections``: to the pool, or closed, as Django does after a request) once
no job has come for ``HOLD_SECONDS``, or after a job failed. An idle thread holds no
connection, and a busy one (a run's writes come a few milliseconds apart) pays neither a
pool checkout nor a health check per call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections

logger = logging.getLogger(__name__)
T = TypeVar("T")
# How long a thread keeps its connections with no job to run: longer than the gaps between
# one run's checkpoint writes, short enough that an idle process soon holds none.
HOLD_SECONDS = 0.05
# (loop, future, fn, args); a submitted job has no loop and no future.
Job = tuple["asyncio.AbstractEventLoop | None", "asyncio.Future[Any] | None", Callable[..., Any], tuple[Any, ...]]


class Workers:
    """Up to ``size`` daemon threads taking jobs from one queue, started as needed."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = size, name
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        # One token per finished job, as ThreadPoolExecutor counts idle threads.
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; cancelling the caller skips it if not started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        if not self._idle.acquire(timeout=0):
            self._add_thread()
        return await future

    def submit(self, fn: Callable[[], Any]) -> None:
        """``fn()`` in a worker thread, from any thread; nobody waits for it, so it must
        hand over its own outcome (and log, not raise, what it cannot)."""
        self._jobs.put((None, None, fn, ()))
        if not self._idle.acquire(timeout=0):
            self._add_thread()

    def _add_thread(self) -> None:
        with self._lock:
            if len(self._threads) < self.size:
                name = f"{self.name}_{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        holding = False  # whether this thread may hold a connection
        while True:
            try:
                job = self._jobs.get(timeout=HOLD_SECONDS) if holding else self._jobs.get()
            except queue.Empty:
                release_connections()  # idle: no connection stays checked out
                holding = False
                continue
            holding = _run(*job)
            self._idle.release()


def _run(
    loop: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any] | None,
    fn: Callable[..., Any],
    args: tuple,
) -> bool:
    """Run one job and hand over its outcome (a submitted job, without a future, hands over
    its own); whether the thread may still hold a connection."""
    if future is not None and future.cancelled():
        return True  # skipped: it still holds what an earlier job left
    result, error = None, None
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
        error = RuntimeError(exc) if isinstance(exc, StopIteration) else exc
        if future is None:
            logger.exception("checkpointer worker: a submitted job failed")
    # After an error, check the connection before the next job uses it.
    holding = error is None
    if not holding:
        release_connections()
    if loop is not None and future is not None:
        settle(loop, future, result, error)
    return holding


def release_connections() -> None:
    """Return this thread's connections (``close_old_connections``: to the pool, or closed
    when obsolete or broken); a failure here must not kill the thread."""
    try:
        close_old_connections()
    except Exception:
        logger.exception("checkpointer worker: closing its database connections failed")


def settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    """Hand ``result`` (or ``exc``) to ``future`` on its loop: at once from the loop's own
    thread, else through ``call_soon_threadsafe``."""
    if running_loop() is loop:
        _hand_over(future, result, exc)
        return
    try:
        loop.call_soon_threadsafe(_hand_over, future, result, exc)
    except RuntimeError:  # the loop closed meanwhile: nobody waits for the result
        pass


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _hand_over(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Give ``future`` its result (or ``exc``), on its loop's thread, unless it was cancelled."""
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
