"""The thread-level stream, ``GET /threads/{thread_id}/stream`` (api-reference §2.7).

Follows every run of a thread on the thread's event stream (runs started later included)
plus thread events. Modes:

* ``run_modes`` (default): every run event as published, ``metadata`` included;
* ``lifecycle``: run starts (their ``metadata`` frames) and, at each run end,
  ``event: metadata`` ``{"status": "run_done", "run_id"}``;
* ``state_update``: ``{"state", "thread_id"}`` after each ``POST /threads/{tid}/state``.

Frames always carry the stream entry id, so ``Last-Event-ID`` replays across runs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable

import orjson

from agentserver.asyncdb import database_sync_to_async
from agentserver.conf import server_settings
from agentserver.errors import unprocessable
from agentserver.events import HEARTBEAT, Event, get_event_bus
from runs.streams import HEARTBEAT_FRAME, sse_frame
from threads.models import Thread

THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


def parse_thread_modes(values: Iterable[str]) -> set[str]:
    """The requested modes (``run_modes`` when none); an unknown one is a 422."""
    modes = set(values) or {"run_modes"}
    unknown = sorted(modes - set(THREAD_STREAM_MODES))
    if unknown:
        raise unprocessable(
            f"Invalid stream mode(s) {unknown}; expected some of {list(THREAD_STREAM_MODES)}"
        )
    return modes


@database_sync_to_async
def thread_exists(thread_id: uuid.UUID | str) -> bool:
    return Thread.objects.filter(pk=thread_id).exists()


def _run_done(event: Event) -> bytes:
    return orjson.dumps({"status": "run_done", "run_id": event.run_id})


def thread_frame(event: Event, modes: set[str]) -> bytes | None:
    """The SSE frame of one thread-stream entry under ``modes``, or None when filtered out."""
    if event.is_end:
        if "lifecycle" in modes and event.run_id:
            return sse_frame("metadata", _run_done(event), event.id)
        return None
    if event.run_id is None:  # a thread event
        return sse_frame(event.event, event.data, event.id) if event.event in modes else None
    if "run_modes" in modes or ("lifecycle" in modes and event.event == "metadata"):
        return sse_frame(event.event, event.data, event.id)
    return None


async def thread_sse(thread_id: uuid.UUID, *, modes: set[str], after: str | None) -> AsyncIterator[bytes]:
    """The SSE body: replay after ``after`` (None: only new events), then live, forever.

    Ends when the thread is deleted (checked at each keep-alive).
    """
    bus = get_event_bus()
    keepalive = server_settings.KEEPALIVE_SECONDS
    async for item in bus.read_thread(str(thread_id), after, keepalive=keepalive):
        if item is HEARTBEAT:
            if not await thread_exists(thread_id):
                return
            yield HEARTBEAT_FRAME
            continue
        assert isinstance(item, Event)
        frame = thread_frame(item, modes)
        if frame is not None:
            yield frame
