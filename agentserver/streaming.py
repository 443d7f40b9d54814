"""Streaming responses whose async body is closed as soon as the server stops sending it,
and their sending until the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestAborted
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

# What a JSON body sends while its content is not there yet: whitespace before a JSON value.
KEEPALIVE = b"\n"


class StreamingResponse(StreamingHttpResponse):
    """A ``StreamingHttpResponse`` of an async body, which it closes when the server stops
    early (the client left while a chunk was being sent).

    Django closes only its own wrapper generators; the body would stay suspended until
    garbage collection ran its ``finally``, so a run streamed with ``on_disconnect=cancel``
    could finish before it was cancelled. (A client that leaves while the body awaits an
    event cancels it there, and its ``finally`` runs at once either way; see ``abandon``.)
    """

    def __init__(self, body: AsyncGenerator[bytes, None], *args: Any, **kwargs: Any) -> None:
        super().__init__(body, *args, **kwargs)
        self._body = body
        self._abandoned = False
        self._ahead: bytes | None = None  # the body's first part, if ``prepare`` read it

    def abandon(self) -> None:
        """The client left: the body ends at its next chunk, if the cancellation of its
        sending is lost. Python 3.11's ``asyncio.wait_for`` (redis-py's asyncio client sends
        each command inside it) returns the awaited result instead of raising when its task
        is cancelled as that result arrives, and the body would go on to the run's end."""
        self._abandoned = True

    async def prepare(self) -> None:
        """Awaited by the server before it sends the response's start, in the task that sends
        the body: a subclass may still set headers here."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self._ahead is not None:
                yield self._ahead
            async for part in super().__aiter__():
                if self._abandoned:
                    return
                yield part
        finally:
            await self._body.aclose()


class OutputResponse(StreamingResponse):
    """A body of keep-alive newlines while a run goes on, then the run's output, its last
    part (``/wait``, ``/join``).

    The output mostly comes before the first keep-alive: it is then sent with a
    Content-Length, as a plain response (no chunked framing, one write fewer), which
    ``prepare`` finds out by awaiting the body's first part."""

    async def prepare(self) -> None:
        try:
            self._ahead = await anext(self._body)
        except StopAsyncIteration:
            return
        if self._ahead != KEEPALIVE:
            self["Content-Length"] = str(len(self._ahead))


async def send_until_disconnect(
    send_response: Callable[[HttpResponseBase, Any], Awaitable[None]],
    response: HttpResponseBase, receive: Any, send: Any,
) -> None:
    """Send a streaming response (with ``send_response``, Django's ASGI handler's) until it
    ends or the client leaves, as Django's handler does; ours is also abandoned then."""

    async def client_left() -> None:
        message = await receive()
        if message["type"] != "http.disconnect":
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")
        raise RequestAborted()

    listener = asyncio.create_task(client_left())
    sender = asyncio.create_task(send_response(response, send))
    await asyncio.wait((listener, sender), return_when=asyncio.FIRST_COMPLETED)
    if listener.done() and isinstance(response, StreamingResponse):
        response.abandon()
    for task in (listener, sender):
        if not task.done():
            task.cancel()
        try:
            await task
        except RequestAborted:
            pass
        except asyncio.CancelledError:
            if not task.cancelled():  # this one was cancelled, not the task it awaited
                raise
