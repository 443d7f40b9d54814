"""Reading a thread's protocol events, and the filters of the event-stream requests.

Every reader translates the thread stream from its first entry (see ``translate``): that
is what makes ``seq`` the same number for the same event on every connection and every
web process. Replay therefore always comes from the thread stream, never from memory
another connection happens to hold.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from agentserver.asyncdb import database_sync_to_async
from agentserver.conf import server_settings
from agentserver.events import HEARTBEAT, Event, get_event_bus
from runs.models import Run
from runs.protocol.translate import ThreadTranslator
from runs.streams import HEARTBEAT_FRAME, sse_frame
from runs.threadstream import thread_exists

CHANNELS = ("values", "updates", "messages", "tools", "custom", "lifecycle", "input", "tasks", "checkpoints")
# What a protocol run streams (subgraphs included) for the translation to work from.
RUN_STREAM_MODES = ["values", "updates", "messages-tuple", "custom", "tasks", "checkpoints"]
# Reading what is stored so far: the first silent interval this long ends the read.
SNAPSHOT_SILENCE = 0.001


class InvalidFilter(ValueError):
    """A request's channels, namespaces, depth or since cannot be used."""


def _is_channel(value: Any) -> bool:
    return isinstance(value, str) and (value in CHANNELS or (value.startswith("custom:") and len(value) > 7))


@dataclass
class EventFilter:
    """Channels, namespace prefixes and depth of one subscription (``SubscribeParams``)."""

    channels: frozenset[str]
    namespaces: list[list[str]] | None = None
    depth: int | None = None

    @classmethod
    def parse(cls, params: Any) -> EventFilter:
        if not isinstance(params, dict):
            raise InvalidFilter("params must be an object")
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            raise InvalidFilter("channels is required and must be a non-empty array")
        bad = [repr(c) for c in channels if not _is_channel(c)]
        if bad:
            raise InvalidFilter(
                f"channels contains unsupported entries: {', '.join(bad[:5])}. Allowed: "
                f"{', '.join(CHANNELS)}, or any `custom:<name>`."
            )
        namespaces = params.get("namespaces")
        if namespaces is not None and not (
            isinstance(namespaces, list)
            and all(isinstance(ns, list) and all(isinstance(s, str) for s in ns) for ns in namespaces)
        ):
            raise InvalidFilter("namespaces must be a list of lists of strings")
        depth = params.get("depth")
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
            raise InvalidFilter("depth must be a non-negative integer")
        return cls(frozenset(channels), namespaces or None, depth)

    def matches(self, event: dict) -> bool:
        method = event["method"]
        params = event["params"]
        if method == "custom":
            name = params["data"].get("name") if isinstance(params["data"], dict) else None
            if "custom" not in self.channels and f"custom:{name}" not in self.channels:
                return False
        elif ("input" if method == "input.requested" else method) not in self.channels:
            return False
        if not self.namespaces:
            return True
        namespace = params["namespace"]
        return any(
            _is_prefix(namespace, prefix) and (self.depth is None or len(namespace) - len(prefix) <= self.depth)
            for prefix in self.namespaces
        )


def _is_prefix(namespace: list[str], prefix: list[str]) -> bool:
    """Segment by segment; a prefix segment without ``:`` also matches ``<it>:<task id>``."""
    if len(prefix) > len(namespace):
        return False
    return all(
        candidate == segment or (":" not in segment and candidate.partition(":")[0] == segment)
        for segment, candidate in zip(prefix, namespace, strict=False)
    )


def parse_since(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidFilter("since must be a non-negative integer")
    return value


# ------------------------------------------------------------------------- reading


@database_sync_to_async
def _graph_name(run_id: str) -> str:
    kwargs = Run.objects.filter(pk=uuid.UUID(run_id)).values_list("kwargs", flat=True).first() or {}
    return ((kwargs.get("config") or {}).get("configurable") or {}).get("graph_id") or "root"


async def _translate(translator: ThreadTranslator, entry: Event) -> list[dict]:
    name = None
    if entry.run_id and not translator.knows(entry.run_id):
        name = await _graph_name(entry.run_id)
    return translator.feed(entry, name)


async def protocol_events(thread_id: str) -> AsyncIterator[list[dict] | None]:
    """The thread's protocol events from the first one, live; None at each silent interval.

    Ends when the thread no longer exists (checked when the stream is silent).
    """
    translator = ThreadTranslator()
    keepalive = server_settings.KEEPALIVE_SECONDS
    async for item in get_event_bus().read_thread(thread_id, "0-0", keepalive=keepalive):
        if item is HEARTBEAT:
            if not await thread_exists(thread_id):
                return
            yield None
            continue
        assert isinstance(item, Event)
        events = await _translate(translator, item)
        if events:
            yield events


async def snapshot(thread_id: str) -> ThreadTranslator:
    """The translation of everything stored on the thread stream so far."""
    translator = ThreadTranslator()
    async with aclosing(get_event_bus().read_thread(thread_id, "0-0", keepalive=SNAPSHOT_SILENCE)) as items:
        async for item in items:
            if item is HEARTBEAT:
                break
            assert isinstance(item, Event)
            await _translate(translator, item)
    return translator


async def protocol_sse(thread_id: str, event_filter: EventFilter, since: int | None) -> AsyncIterator[bytes]:
    """The body of ``POST /threads/{tid}/stream/events``: ``event: <method>``, ``id: <seq>``."""
    async for batch in protocol_events(thread_id):
        if batch is None:
            yield HEARTBEAT_FRAME
            continue
        frames = [
            sse_frame(event["method"], orjson.dumps(event), str(event["seq"]))
            for event in batch
            if (since is None or event["seq"] > since) and event_filter.matches(event)
        ]
        if frames:
            yield b"".join(frames)
