"""The per-run event stream and the cancel signal, behind one small interface.

Two backends, chosen by ``AGENT_SERVER["EVENT_BUS"]``:

* ``RedisEventBus``: a Redis Stream per run (``XADD``; entry ids are the SSE ids), read
  with blocking ``XREAD`` so any web process can serve any run; cancel signals on a pub/sub
  channel. Everything here may vanish without losing a run: the database is the truth.
* ``MemoryEventBus``: the same semantics inside one process (``manage.py dev``), where
  runs execute on worker threads and readers wait on the web server's event loop.

Writers (the executor) are synchronous; readers (SSE, ``/wait``) are async. The end of a
run is an internal ``END_EVENT`` entry whose data carries the final status and output; it
is appended only after the terminal status is committed, and never sent to HTTP clients.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from django.conf import settings

from agentserver.conf import server_settings

END_EVENT = "__end__"
KEY_PREFIX = "agentserver:run:"
# Longer than any blocking read we issue (keep-alive intervals, pub/sub waits): redis-py's
# asyncio client otherwise times out a 5 s XREAD BLOCK at its default of 5 s.
SOCKET_TIMEOUT = 60


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: bytes  # one line of JSON, serialised once by the writer

    @property
    def is_end(self) -> bool:
        return self.event == END_EVENT


class Heartbeat:
    """Yielded by ``EventBus.read`` when nothing happened for a keep-alive interval."""


HEARTBEAT = Heartbeat()


def _id_after(a: str, b: str) -> bool:
    """Whether stream id ``a`` ("ms-seq") sorts after ``b``."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) > (int(bms), int(bseq or 0))


def normalise_last_id(last_id: str | None) -> str | None:
    """``-1``, ``-`` and ``0`` mean "from the beginning" (useStream sends ``-1``)."""
    if last_id is None:
        return None
    last_id = last_id.strip()
    if last_id in {"-1", "-", "0", ""}:
        return "0-0"
    ms, _, seq = last_id.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        return "0-0"
    return f"{ms}-{seq or 0}"


class EventBus:
    """What the executor and the readers need from an event transport."""

    def publish(self, run_id: str, event: str, data: bytes) -> str:
        raise NotImplementedError

    def end(self, run_id: str, data: dict[str, Any]) -> None:
        """Append the end marker and start the retention clock."""
        self.publish(run_id, END_EVENT, orjson.dumps(data))

    def read(
        self, run_id: str, after: str | None, *, keepalive: float
    ) -> AsyncIterator[Event | Heartbeat]:
        """Events after id ``after`` (None: only new ones), then live ones, up to the end marker."""
        raise NotImplementedError

    async def last_event(self, run_id: str) -> Event | None:
        raise NotImplementedError

    def exists(self, run_id: str) -> bool:
        raise NotImplementedError

    def signal_cancel(self, run_id: str, action: str) -> None:
        raise NotImplementedError

    def watch_cancel(self, run_id: str) -> CancelWatch:
        raise NotImplementedError


class CancelWatch:
    """Delivers a cancel signal for one run to the executor's event loop."""

    def __init__(self) -> None:
        self.action: str | None = None

    async def start(self) -> None:
        """Begin listening; a signal sent after this returns is not missed."""

    async def wait(self) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


# ---------------------------------------------------------------------------- memory


class _MemoryStream:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.ended_at: float | None = None
        self.last_ms = 0
        self.seq = 0


class _MemoryCancelWatch(CancelWatch):
    def __init__(self, bus: MemoryEventBus, run_id: str) -> None:
        super().__init__()
        self.bus, self.run_id = bus, run_id
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future = self.loop.create_future()

    def deliver(self, action: str) -> None:
        self.action = action
        self.loop.call_soon_threadsafe(lambda: self.future.done() or self.future.set_result(action))

    async def wait(self) -> str:
        return await self.future

    async def aclose(self) -> None:
        with self.bus.lock:
            watches = self.bus.watches.get(self.run_id, [])
            if self in watches:
                watches.remove(self)
            if not watches:
                self.bus.watches.pop(self.run_id, None)


class MemoryEventBus(EventBus):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.streams: dict[str, _MemoryStream] = {}
        self.watches: dict[str, list[_MemoryCancelWatch]] = {}

    def _stream(self, run_id: str) -> _MemoryStream:
        stream = self.streams.get(run_id)
        if stream is None:
            stream = self.streams[run_id] = _MemoryStream()
        return stream

    def publish(self, run_id: str, event: str, data: bytes) -> str:
        with self.lock:
            stream = self._stream(run_id)
            now_ms = int(time.time() * 1000)
            if now_ms > stream.last_ms:
                stream.last_ms, stream.seq = now_ms, 0
            else:
                stream.seq += 1
            entry = Event(f"{stream.last_ms}-{stream.seq}", event, data)
            stream.events.append(entry)
            if len(stream.events) > server_settings.STREAM_MAXLEN:
                del stream.events[: len(stream.events) - server_settings.STREAM_MAXLEN]
            if event == END_EVENT:
                stream.ended_at = time.monotonic()
            waiters, stream.waiters = stream.waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))
        if event == END_EVENT:
            self._expire_old()
        return entry.id

    def _expire_old(self) -> None:
        cutoff = time.monotonic() - server_settings.STREAM_TTL_SECONDS
        with self.lock:
            for run_id in [r for r, s in self.streams.items() if s.ended_at and s.ended_at < cutoff]:
                del self.streams[run_id]

    async def read(
        self, run_id: str, after: str | None, *, keepalive: float
    ) -> AsyncIterator[Event | Heartbeat]:
        loop = asyncio.get_running_loop()
        with self.lock:
            events = self._stream(run_id).events
            position = len(events) if after is None else sum(1 for e in events if not _id_after(e.id, after))
            last_seen = events[position - 1].id if position else (after or "0-0")
        while True:
            with self.lock:
                stream = self._stream(run_id)
                fresh = [e for e in stream.events if _id_after(e.id, last_seen)]
                future = None
                if not fresh:
                    future = loop.create_future()
                    stream.waiters.append((loop, future))
            for entry in fresh:
                yield entry
                if entry.is_end:
                    return
                last_seen = entry.id
            if future is not None:
                try:
                    await asyncio.wait_for(future, keepalive)
                except asyncio.TimeoutError:
                    yield HEARTBEAT

    async def last_event(self, run_id: str) -> Event | None:
        with self.lock:
            stream = self.streams.get(run_id)
            return stream.events[-1] if stream and stream.events else None

    def exists(self, run_id: str) -> bool:
        with self.lock:
            return run_id in self.streams

    def signal_cancel(self, run_id: str, action: str) -> None:
        with self.lock:
            watches = list(self.watches.get(run_id, []))
        for watch in watches:
            watch.deliver(action)

    def watch_cancel(self, run_id: str) -> CancelWatch:
        watch = _MemoryCancelWatch(self, run_id)
        with self.lock:
            self.watches.setdefault(run_id, []).append(watch)
        return watch


# ----------------------------------------------------------------------------- redis


class _RedisCancelWatch(CancelWatch):
    def __init__(self, url: str, run_id: str) -> None:
        super().__init__()
        self.client = aredis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.channel = f"{KEY_PREFIX}{run_id}:cancel"

    async def start(self) -> None:
        await self.pubsub.subscribe(self.channel)

    async def wait(self) -> str:
        while True:
            message = await self.pubsub.get_message(timeout=10)
            if message and message.get("type") == "message":
                self.action = message["data"].decode()
                return self.action

    async def aclose(self) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()


class RedisEventBus(EventBus):
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT)
        # One async client per event loop: redis.asyncio connections are bound to a loop.
        self._async_clients: dict[asyncio.AbstractEventLoop, aredis.Redis] = {}

    def _async(self) -> aredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = aredis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT)
        return client

    @staticmethod
    def key(run_id: str) -> str:
        return f"{KEY_PREFIX}{run_id}"

    def publish(self, run_id: str, event: str, data: bytes) -> str:
        key = self.key(run_id)
        fields = {"e": event, "d": data}
        if event != END_EVENT:
            entry_id = self.client.xadd(key, fields, maxlen=server_settings.STREAM_MAXLEN, approximate=True)
            return entry_id.decode()
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=server_settings.STREAM_MAXLEN, approximate=True)
        pipe.expire(key, server_settings.STREAM_TTL_SECONDS)
        entry_id, _ = pipe.execute()
        return entry_id.decode()

    @staticmethod
    def _event(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
        return Event(entry_id.decode(), fields[b"e"].decode(), fields[b"d"])

    async def read(
        self, run_id: str, after: str | None, *, keepalive: float
    ) -> AsyncIterator[Event | Heartbeat]:
        client, key = self._async(), self.key(run_id)
        if after is None:
            # "Only new events": start at the current last entry; "$" would lose entries
            # that arrive between two blocking reads.
            latest = await client.xrevrange(key, count=1)
            after = latest[0][0].decode() if latest else "0-0"
        cursor = after
        block_ms = max(1, int(keepalive * 1000))
        while True:
            response = await client.xread({key: cursor}, block=block_ms, count=500)
            if not response:
                yield HEARTBEAT
                continue
            for entry_id, fields in response[0][1]:
                entry = self._event(entry_id, fields)
                yield entry
                if entry.is_end:
                    return
                cursor = entry.id

    async def last_event(self, run_id: str) -> Event | None:
        entries = await self._async().xrevrange(self.key(run_id), count=1)
        return self._event(*entries[0]) if entries else None

    def exists(self, run_id: str) -> bool:
        return bool(self.client.exists(self.key(run_id)))

    def signal_cancel(self, run_id: str, action: str) -> None:
        self.client.publish(f"{KEY_PREFIX}{run_id}:cancel", action)

    def watch_cancel(self, run_id: str) -> CancelWatch:
        return _RedisCancelWatch(self.url, run_id)


@lru_cache(maxsize=None)
def _bus_for(kind: str, url: str) -> EventBus:
    return RedisEventBus(url) if kind == "redis" else MemoryEventBus()


def get_event_bus() -> EventBus:
    """The process's event bus, created on first use from the current settings."""
    return _bus_for(server_settings.EVENT_BUS, settings.REDIS_URL)

