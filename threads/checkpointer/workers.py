"""The threads that run the saver's async methods.

Not ``sync_to_async(thread_sensitive=True)``, which would queue every run of a worker
behind one thread, and not a ``ThreadPoolExecutor`` around a per-call connection check:
a thread here keeps its database connections while jobs are queued and hands them back
(``close_old_connections``: to the pool, or closed, as Django does after a request) only
when it is about to wait. An idle thread holds no connection, and a busy one pays neither
a pool checkout nor a health check per call.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import close_old_connections

T = TypeVar("T")
Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


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

    def _add_thread(self) -> None:
        with self._lock:
            if len(self._threads) < self.size:
                name = f"{self.name}_{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                close_old_connections()  # about to wait: no connection stays checked out
                job = self._jobs.get()
            _run(*job)
            self._idle.release()


def _run(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple) -> None:
    if future.cancelled():
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
        # The error may have broken the connection: check it before the next job uses it.
        close_old_connections()
        _settle(loop, future, None, RuntimeError(exc) if isinstance(exc, StopIteration) else exc)
    else:
        _settle(loop, future, result, None)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed meanwhile: nobody waits for the result
        pass
