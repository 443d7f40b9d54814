"""The ORM from async code, off the event loop and without pinning connections.

Sync views run on their request's thread (see ``agentserver.asgi``); async code (SSE relays,
websocket consumers) reaches the ORM through ``database_sync_to_async``, which runs on a
shared pool (not the one thread-sensitive executor, which would serialise every stream)
and hands the connection back to the pool after each call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


def database_sync_to_async(function: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=False)
