"""Streaming responses whose async body is closed as soon as the server stops sending it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse


class StreamingResponse(StreamingHttpResponse):
    """A ``StreamingHttpResponse`` of an async body, which it closes when the server stops
    early (the client left while a chunk was being sent).

    Django closes only its own wrapper generators; the body would stay suspended until
    garbage collection ran its ``finally``, so a run streamed with ``on_disconnect=cancel``
    could finish before it was cancelled. (A client that leaves while the body awaits an
    event cancels it there, and its ``finally`` runs at once either way.)
    """

    def __init__(self, body: AsyncGenerator[bytes, None], *args: Any, **kwargs: Any) -> None:
        super().__init__(body, *args, **kwargs)
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in super().__aiter__():
                yield part
        finally:
            await self._body.aclose()
