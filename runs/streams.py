"""Relaying a run's event stream to HTTP clients: SSE frames, and the /wait and /join bodies.

Readers block on the event bus (Redis ``XREAD BLOCK`` or the in-process bus), never poll.
While a run is silent they send keep-alives, and on each keep-alive they also check the
database, so a run whose end marker was lost (Redis flushed) still ends the response.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from agentserver.asyncdb import database_sync_to_async
from agentserver.conf import server_settings
from agentserver.errors import APIError
from agentserver.events import HEARTBEAT, Event, Heartbeat, get_event_bus, id_key
from agentserver.renderers import dumps
from agentserver.rows import fetch_by_key
from agentserver.streaming import KEEPALIVE
from runs.models import ACTIVE_RUN_STATUSES, Run
from runs.services import cancel_runs, run_output

SSE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
HEARTBEAT_FRAME = b": heartbeat\r\n\r\n"
EXPIRED_ERROR = orjson.dumps(
    {"error": "StreamExpired", "message": "Some events of this run are no longer retained; the replay is incomplete."}
)


def sse_frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE frame: event, data (one line of JSON), then id when the run is resumable."""
    event = event.replace("\r", "").replace("\n", "")
    frame = b"event: " + event.encode() + b"\r\ndata: " + data + b"\r\n"
    if event_id is not None:
        frame += b"id: " + event_id.encode() + b"\r\n"
    return frame + b"\r\n"


def mode_matches(event: str, modes: set[str]) -> bool:
    """Join filters: exact mode, ``messages*`` for message modes, ``mode|ns`` for subgraphs."""
    if not modes or event in {"metadata", "error"}:
        return True
    base = event.split("|", 1)[0]
    if base in modes:
        return True
    return base.startswith("messages") and bool(modes & {"messages", "messages-tuple"})


@database_sync_to_async
def _run_state(run_id: str) -> Run | None:
    return fetch_by_key(Run, run_id=run_id)


async def run_is_over(run_id: str) -> bool:
    run = await _run_state(run_id)
    return run is None or run.status not in ACTIVE_RUN_STATUSES


def _events(run_id: str, after: str | None) -> AsyncIterator[Event | None]:
    """The run's events up to its end; None for each keep-alive interval of silence."""
    keepalive = server_settings.KEEPALIVE_SECONDS
    return _until_over(run_id, get_event_bus().read(run_id, after, keepalive=keepalive))


def _end(run_id: str) -> AsyncIterator[Event | None]:
    """The run's end marker; None for each keep-alive interval before it."""
    return _until_over(run_id, get_event_bus().read_end(run_id, keepalive=server_settings.KEEPALIVE_SECONDS))


async def _until_over(run_id: str, items: AsyncIterator[Event | Heartbeat]) -> AsyncIterator[Event | None]:
    """``items`` up to the end marker, or up to a keep-alive that finds the run over in the
    database (its end marker was lost); None for each other keep-alive."""
    async for item in items:
        if item is HEARTBEAT:
            if await run_is_over(run_id):
                return
            yield None
            continue
        assert isinstance(item, Event)
        yield item
        if item.is_end:
            return


async def sse_stream(
    run_id: str, *, after: str | None, with_ids: bool, modes: set[str] | None = None,
    cancel_on_disconnect: bool = False, replay: bool = False,
) -> AsyncIterator[bytes]:
    """The SSE body of ``/stream`` (from the run's first event) and of a stream join
    (``replay``: after the client's ``Last-Event-ID``, which may fall into a gap)."""
    finished = False
    try:
        gap = await replay_gap(run_id, after) if replay and after is not None else None
        if gap is not None:
            yield sse_frame("error", EXPIRED_ERROR)
            if gap == "expired":
                finished = True
                return
        async for item in _events(run_id, after):
            if item is None:
                yield HEARTBEAT_FRAME
            elif not item.is_end and mode_matches(item.event, modes or set()):
                yield sse_frame(item.event, item.data, item.id if with_ids else None)
        finished = True
    finally:
        if not finished and cancel_on_disconnect:
            await cancel_quietly(run_id)


async def replay_gap(run_id: str, after: str) -> str | None:
    """Why a replay after ``after`` cannot be exact: "expired" (the finished run's events
    are gone) or "trimmed" (the oldest are gone; a retained stream starts with ``metadata``)."""
    bus = get_event_bus()
    oldest = await bus.oldest(run_id)
    if oldest is None:
        # Over, and still nothing stored (looked at again: it may have just been written).
        return "expired" if await run_is_over(run_id) and await bus.oldest(run_id) is None else None
    if oldest.event != "metadata" and id_key(oldest.id) > id_key(after):
        return "trimmed"
    return None


async def output_stream(run_id: str, *, cancel_on_disconnect: bool = False) -> AsyncIterator[bytes]:
    """The body of ``/wait`` and ``/join``: newlines while waiting, then the final output."""
    finished = False
    output: Any = None
    try:
        async for item in _end(run_id):
            if item is None:
                yield KEEPALIVE
            elif item.is_end:
                output = orjson.loads(item.data).get("output")
        finished = True
    finally:
        if not finished and cancel_on_disconnect:
            await cancel_quietly(run_id)
    if output is None:
        output = await stored_output(run_id)
    yield dumps(output)


async def until_stopped(run_id: str) -> AsyncIterator[bytes]:
    """The (empty) body of a cancel answer, complete once the run has stopped: after it,
    no node of the run starts. Bounded, in case the worker is gone (the sweep ends it)."""
    try:
        async with asyncio.timeout(server_settings.CANCEL_WAIT_SECONDS):
            async for _ in _end(run_id):
                pass
    except TimeoutError:
        pass
    yield b""


@database_sync_to_async
def stored_output(run_id: str) -> Any:
    run = fetch_by_key(Run, run_id=run_id)
    return run_output(run) if run is not None else {}


@database_sync_to_async
def cancel_quietly(run_id: str) -> None:
    """``on_disconnect=cancel``: the client went away; stop the run if it is still going."""
    try:
        cancel_runs(Run.objects.filter(pk=uuid.UUID(run_id)), "interrupt")
    except APIError:  # 404: nothing in flight any more
        pass
