"""ASGI entry point: ``uvicorn agentserver.asgi:application``.

HTTP goes to Django (each request's sync code on a reused thread, see
``PooledThreadASGIHandler``); websockets to the Channels consumers of ``runs.urls``, behind an
origin check: a browser (which always sends ``Origin``) may connect only from an allowed
origin, so a page elsewhere cannot open a socket with the user's cookies. Clients that
send no ``Origin`` (the SDK, servers) carry no ambient browser credentials and pass.
"""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections, reset_queries
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

from agentserver.streaming import StreamingResponse, send_until_disconnect

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

    async def handle(self, scope: dict, receive: Any, send: Any) -> None:
        """Django's ``handle``, less what a response that is closed with its view needs.

        Such a response (see ``finish_with_view``) is closed in the view's hop, which ends
        the request there (``request_finished``: the thread's connections go back before
        anything is sent): no hop to the thread after sending. A plain response is then just
        sent: the task that listens for the client's disconnect has nothing to cancel.
        Other responses (files, the admin's) take Django's path.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        if prefix := get_script_prefix(scope):  # none: "/", what django.urls answers unset
            set_script_prefix(prefix)
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return
        try:
            try:
                response = await self.run_get_response(request)
            except asyncio.CancelledError:
                await signals.request_finished.asend(sender=self.__class__)
                raise
            if not response.streaming:
                await self.send_response(response, send)
            else:
                await send_until_disconnect(self.send_response, response, receive, send)
            if not response.closed:
                await sync_to_async(response.close)()
        finally:
            body_file.close()

    async def read_body(self, receive: Any) -> Any:
        """A body that arrives in one message (an API request's JSON) is kept in memory as
        it is; Django writes every body into a spooled temporary file. Longer ones still go
        there."""
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            return io.BytesIO(first.get("body", b""))
        pending = [first]

        async def replayed() -> dict:
            return pending.pop() if pending else await receive()

        return await super().read_body(replayed)

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        if isinstance(response, StreamingResponse):
            await response.prepare()
        await super().send_response(response, send)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(self._get_response_and_finish, thread_sensitive=True)(request)
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # as Django's: the server chunks files
        return response

    def _get_response_and_finish(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response._handler_class = self.__class__
        # As CommonMiddleware would (the API's chain leaves it out): without a length the
        # server frames the body in chunks, one write more per response.
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        if finish_with_view(response):
            response.close()
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


def finish_with_view(response: HttpResponseBase) -> bool:
    """Whether the request may end as its view returns: a plain response holds its content
    already, and ours of an async body closes that body itself (closing it here closes
    nothing the body needs; its ``close`` only ends the request)."""
    return not response.streaming or isinstance(response, StreamingResponse)


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
