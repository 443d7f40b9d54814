"""ASGI entry point: ``uvicorn agentserver.asgi:application``.

HTTP goes to Django (each request's sync code on a reused thread, see
``PooledThreadASGIHandler``); websockets to the Channels consumers of ``runs.urls``, behind an
origin check: a browser (which always sends ``Origin``) may connect only from an allowed
origin, so a page elsewhere cannot open a socket with the user's cookies. Clients that
send no ``Origin`` (the SDK, servers) carry no ambient browser credentials and pass.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections, reset_queries
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentserver.settings")
django.setup(set_prefix=False)


class PooledThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler, with each request's sync code in one hop to a reused thread.

    Django runs a request's sync middleware and view on a thread of that request's own
    (asgiref's ``ThreadSensitiveContext``) and starts a new one every time: a thread start,
    and all per-thread state built again (the database wrapper; Celery's result backend,
    which scans every installed package's entry points). Here a request borrows an idle
    single-thread executor and returns it afterwards: still one request per thread at a time.

    Every view is sync, so the middleware chain is built sync too and runs with the view in
    one hop: an async chain would hop to the thread for each sync middleware hook (Django's
    ``SecurityMiddleware`` has two) and again for the view. Bodies of streaming responses
    are still iterated on the event loop, as Django does.
    """

    max_idle = 64

    def __init__(self) -> None:
        # ASGIHandler.__init__ only builds the async chain, which this one replaces.
        self.load_middleware(is_async=False)
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django's own error
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, "agentserver-request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        except BaseException:
            self._return_when_idle(executor)
            raise
        # Django awaited every sync call it made, even for a request whose client left while
        # its view ran: the view's cleanup (request_finished) queues behind it on this thread.
        self._return(executor)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # as Django's: the server chunks files
        return response

    def _return(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def _return_when_idle(self, executor: ThreadPoolExecutor) -> None:
        """After an error out of the handler, a sync call may still be running: the executor
        is idle again once everything queued on it ran."""
        loop = asyncio.get_running_loop()
        barrier = executor.submit(int)
        barrier.add_done_callback(lambda _: loop.call_soon_threadsafe(self._return, executor))


def clean_up_when_requests_end() -> None:
    """Django resets the query log and closes stale connections as a request starts and, the
    latter, again as it ends; under ASGI each batch of sync signal receivers is a thread hop
    (~0.3 ms). Our request threads clean up as each request ends, so the start's batch goes:
    the next request on a thread finds what the last one left closed."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_started.disconnect(reset_queries)
    signals.request_finished.connect(reset_queries)


clean_up_when_requests_end()
django_asgi_app = PooledThreadASGIHandler()

from django.conf import settings  # noqa: E402  (needs Django set up)

from agentserver.startup import prepare_process  # noqa: E402
from runs.urls import websocket_urlpatterns  # noqa: E402

prepare_process()


class BrowserOriginValidator(OriginValidator):
    """``AllowedHostsOriginValidator`` that lets non-browser clients (no ``Origin``) through.

    Allowed origins: ``ALLOWED_HOSTS`` (``*`` allows all) and any ``CORS_ALLOWED_ORIGINS``.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def websocket_origins() -> list[str]:
    return [*settings.ALLOWED_HOSTS, *getattr(settings, "CORS_ALLOWED_ORIGINS", [])]


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), websocket_origins()),
    }
)
