"""Run and thread event streams and the cancel signal, behind one small interface.

Two backends, chosen by ``AGENT_SERVER["EVENT_BUS"]``:

* ``RedisEventBus``: a Redis Stream per run and per thread (``XADD``; entry ids are the SSE
  ids), read with blocking ``XREAD`` so any web process can serve any run; cancel signals
  on a pub/sub channel. Everything here may vanish without losing a run: the database is
  the truth.
* ``MemoryEventBus``: the same semantics inside one process (``manage.py dev``), where
  runs execute on worker threads and readers wait on the web server's event loop.

Every run event goes to the run's stream and, in the same round trip, to its thread's
stream (which the thread stream endpoints follow across runs). The end of a run is an
internal ``END_EVENT`` entry whose data carries the final status and output; it is
appended only after the terminal status is committed, and never sent to HTTP clients as is;
it is also kept alone (``run_end``) for the readers of the outcome alone.
Writers (the executor) are synchronous; readers (SSE, ``/wait``) are async.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from django.conf import settings

from agentserver.conf import server_settings

END_EVENT = "__end__"
KEY_PREFIX = "agentserver:"
# How long a reply may take beyond the time a command blocks for.
SOCKET_TIMEOUT = 60
# redis-py's pools otherwise refuse the 101st connection ("Too many connections"). Readers
# (a stream, a /wait, a /join) hold one each in their blocking read, on connections of
# their own (``AsyncCommandSender``): Redis itself accepts 10,000 clients by default.
MAX_CONNECTIONS = 10_000


def run_stream(run_id: str) -> str:
    return f"run:{run_id}"


def thread_stream(thread_id: str) -> str:
    return f"thread:{thread_id}"


def run_end(run_id: str) -> str:
    """Where a run's end marker is kept alone, for readers that want only the outcome."""
    return f"run:{run_id}:end"


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: bytes  # one line of JSON, serialised once by the writer
    run_id: str | None = None  # set on thread-stream entries

    @property
    def is_end(self) -> bool:
        return self.event == END_EVENT


class Heartbeat:
    """Yielded by ``EventBus.read`` when nothing happened for a keep-alive interval."""


HEARTBEAT = Heartbeat()


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


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


class CancelWatch:
    """Delivers a cancel signal for one run to the executor's event loop."""

    def __init__(self, router: CancelRouter, run_id: str) -> None:
        self.router, self.run_id = router, run_id
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future = self.loop.create_future()

    def deliver(self, action: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self.future.done() or self.future.set_result(action))

    async def wait(self) -> str:
        return await self.future

    def close(self) -> None:
        self.router.forget(self)


class CancelRouter:
    """Routes cancel signals to the watches of this process's runs.

    A signal that arrives just before its run's watch is registered is remembered for a
    minute, so the race between claiming a run and listening for its cancel loses nothing.
    """

    REMEMBER_SECONDS = 60.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watches: dict[str, list[CancelWatch]] = {}
        self.recent: dict[str, tuple[str, float]] = {}

    def watch(self, run_id: str) -> CancelWatch:
        watch = CancelWatch(self, run_id)
        with self.lock:
            self.watches.setdefault(run_id, []).append(watch)
            early = self.recent.get(run_id)
        if early is not None:
            watch.deliver(early[0])
        return watch

    def forget(self, watch: CancelWatch) -> None:
        with self.lock:
            watches = self.watches.get(watch.run_id, [])
            if watch in watches:
                watches.remove(watch)
            if not watches:
                self.watches.pop(watch.run_id, None)

    def deliver(self, run_id: str, action: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.recent = {r: v for r, v in self.recent.items() if v[1] > now - self.REMEMBER_SECONDS}
            self.recent[run_id] = (action, now)
            watches = list(self.watches.get(run_id, []))
        for watch in watches:
            watch.deliver(action)


class EventBus:
    """What the executor and the readers need from an event transport."""

    def _append(
        self, entries: list[tuple[str, str, bytes, str | None]], *, expire: list[str],
        outcome: tuple[str, bytes] | None = None,
    ) -> list[str]:
        """Append ``(stream, event, data, run_id)`` entries; restart retention of ``expire``;
        keep ``outcome``, a run's ``(run_id, end data)``, for ``_read_end``."""
        raise NotImplementedError

    def _read_end(self, run_id: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """A heartbeat per silent interval until the run's end marker is kept, then it."""
        raise NotImplementedError

    def _read(self, stream: str, after: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """Entries after id ``after``, then live ones; a heartbeat per silent interval."""
        raise NotImplementedError

    async def _latest(self, stream: str) -> Event | None:
        raise NotImplementedError

    async def oldest(self, run_id: str) -> Event | None:
        """The oldest retained event of a run (a replay checks it for gaps)."""
        raise NotImplementedError

    def publish(self, run_id: str, event: str, data: bytes, *, thread_id: str | None = None) -> str:
        entries = [(run_stream(run_id), event, data, None)]
        if thread_id:
            entries.append((thread_stream(thread_id), event, data, run_id))
        return self._append(entries, expire=[])[0]

    def end(self, run_id: str, data: dict[str, Any], *, thread_id: str | None = None) -> None:
        """Append the end marker and start the retention clock of the run's events."""
        payload = orjson.dumps(data)
        entries = [(run_stream(run_id), END_EVENT, payload, None)]
        expire = [run_stream(run_id)]
        if thread_id:
            entries.append((thread_stream(thread_id), END_EVENT, payload, run_id))
            expire.append(thread_stream(thread_id))
        self._append(entries, expire=expire, outcome=(run_id, payload))

    def publish_thread(self, thread_id: str, event: str, data: bytes) -> str:
        """A thread event that belongs to no run (``state_update``)."""
        stream = thread_stream(thread_id)
        return self._append([(stream, event, data, None)], expire=[stream])[0]

    async def read(self, run_id: str, after: str | None, *, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """A run's events after id ``after`` (None: only new ones), live, up to its end marker.

        With ``after=None`` on a run that already ended, the end marker is still yielded,
        so a late reader learns the end instead of waiting for events that never come.
        """
        stream = run_stream(run_id)
        if after is None:
            latest = await self._latest(stream)
            if latest is not None and latest.is_end:
                yield latest
                return
            after = latest.id if latest is not None else "0-0"
        async for item in self._read(stream, after, keepalive):
            yield item
            if isinstance(item, Event) and item.is_end:
                return

    async def read_end(self, run_id: str, *, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """The run's end marker, as soon as it is there (a heartbeat per silent interval
        before): ``/wait``, ``/join`` and a cancel's wait need the outcome only, and would
        otherwise wake for every event of the run."""
        async for item in self._read_end(run_id, keepalive):
            yield item
            if isinstance(item, Event):
                return

    async def read_thread(self, thread_id: str, after: str | None, *, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """Every event of every run of a thread, and thread events, without end."""
        stream = thread_stream(thread_id)
        if after is None:
            latest = await self._latest(stream)
            after = latest.id if latest is not None else "0-0"
        async for item in self._read(stream, after, keepalive):
            yield item

    def has_run(self, run_id: str) -> bool:
        """Whether events of the run are still retained (e.g. a finished stateless run)."""
        raise NotImplementedError

    def signal_cancel(self, run_id: str, action: str) -> None:
        """Tell whichever process executes the run to stop it."""
        raise NotImplementedError

    def watch_cancel(self, run_id: str) -> CancelWatch:
        """Listen for the run's cancel signal (call from the executor's event loop)."""
        raise NotImplementedError

    def listen_for_cancels(self) -> None:
        """Start receiving this process's cancel signals before its first run: a signal sent
        before the process listens is lost, and a run cancelled right after its claim would
        then stop only at its lease's next heartbeat."""


# ---------------------------------------------------------------------------- memory


class _MemoryStream:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.expires_at: float | None = None
        self.last_ms = 0
        self.seq = 0

    def next_id(self) -> str:
        now_ms = int(time.time() * 1000)
        if now_ms > self.last_ms:
            self.last_ms, self.seq = now_ms, 0
        else:
            self.seq += 1
        return f"{self.last_ms}-{self.seq}"


class MemoryEventBus(EventBus):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.streams: dict[str, _MemoryStream] = {}
        # (expires_at, stream name) in the order retention was (re)started: every stream gets
        # the same TTL, so the queue is sorted and an end drops what is due without looking
        # at the thousands of streams an hour of runs leaves.
        self.expiries: deque[tuple[float, str]] = deque()
        self.cancels = CancelRouter()

    def _stream(self, name: str) -> _MemoryStream:
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = _MemoryStream()
        return stream

    def _append(
        self, entries: list[tuple[str, str, bytes, str | None]], *, expire: list[str],
        outcome: tuple[str, bytes] | None = None,
    ) -> list[str]:
        if outcome is not None:  # here a stream of its own, retained with the run's
            run_id, data = outcome
            entries = [*entries, (run_end(run_id), END_EVENT, data, None)]
            expire = [*expire, run_end(run_id)]
        ids, woken = [], []
        maxlen = server_settings.STREAM_MAXLEN
        with self.lock:
            for name, event, data, run_id in entries:
                stream = self._stream(name)
                entry = Event(stream.next_id(), event, data, run_id)
                stream.events.append(entry)
                if len(stream.events) > maxlen:
                    del stream.events[: len(stream.events) - maxlen]
                woken.extend(stream.waiters)
                stream.waiters = []
                ids.append(entry.id)
            if expire:
                now = time.monotonic()
                expires_at = now + server_settings.STREAM_TTL_SECONDS
                for name in expire:
                    self._stream(name).expires_at = expires_at
                    self.expiries.append((expires_at, name))
                self._drop_expired(now)
        for loop, future in woken:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))
        return ids

    def _drop_expired(self, now: float) -> None:
        while self.expiries and self.expiries[0][0] < now:
            expires_at, name = self.expiries.popleft()
            stream = self.streams.get(name)
            if stream is not None and stream.expires_at == expires_at:  # not restarted since
                del self.streams[name]

    async def _latest(self, name: str) -> Event | None:
        with self.lock:
            stream = self.streams.get(name)
            return stream.events[-1] if stream and stream.events else None

    async def oldest(self, run_id: str) -> Event | None:
        with self.lock:
            stream = self.streams.get(run_stream(run_id))
            return stream.events[0] if stream and stream.events else None

    async def _read(self, name: str, after: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        loop = asyncio.get_running_loop()
        cursor = id_key(after)
        while True:
            with self.lock:
                stream = self._stream(name)
                fresh = [e for e in stream.events if id_key(e.id) > cursor]
                future = None
                if not fresh:
                    future = loop.create_future()
                    stream.waiters.append((loop, future))
            for entry in fresh:
                cursor = id_key(entry.id)
                yield entry
            if future is not None:
                try:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                    # arrives as the event does, and a reader whose client left would go on.
                    async with asyncio.timeout(keepalive):
                        await future
                except TimeoutError:
                    yield HEARTBEAT

    def _read_end(self, run_id: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        return self._read(run_end(run_id), "0-0", keepalive)

    def has_run(self, run_id: str) -> bool:
        with self.lock:
            stream = self.streams.get(run_stream(run_id))
            return bool(stream and stream.events)

    def signal_cancel(self, run_id: str, action: str) -> None:
        self.cancels.deliver(run_id, action)

    def watch_cancel(self, run_id: str) -> CancelWatch:
        return self.cancels.watch(run_id)


# ----------------------------------------------------------------------------- redis


class CommandSender:
    """Sends batches of commands in one round trip, on connections of its own.

    For a run's hottest Redis calls (event appends; the push onto the ready queue in
    ``runs.dispatch``): a redis-py pipeline checks a connection out of its pool and back
    (with a lock, a pid check and usage metrics), wraps the call in retry and deprecation
    layers, and builds a pipeline object, which together cost more CPU than the round trip.
    Here a thread takes an idle connection from a queue (or opens one; there are as many as
    threads appending at once) and puts it back. A batch that fails to connect or times out
    is sent again once on a fresh connection, as redis-py retries: a connection that Redis
    closed while idle fails on first use.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.connection_class, self.connection_kwargs = pool.connection_class, pool.connection_kwargs
        self.pid = os.getpid()
        self.idle: queue.SimpleQueue[redis.Connection] = queue.SimpleQueue()

    def send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands``, in order; an error reply raises ``ResponseError``
        (and the connection, with replies left unread on it, is closed)."""
        if os.getpid() != self.pid:  # forked: the parent's connections are not ours
            self.pid, self.idle = os.getpid(), queue.SimpleQueue()
        try:
            connection = self.idle.get_nowait()
        except queue.Empty:
            connection = self.connection_class(**self.connection_kwargs)
        try:
            try:
                replies = self._round_trip(connection, commands)
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
                replies = self._round_trip(connection, commands)  # on a new connection
        except BaseException:
            connection.disconnect()  # replies may be left unread on it
            raise
        self.idle.put(connection)
        return replies

    @staticmethod
    def _round_trip(connection: redis.Connection, commands: list[tuple[Any, ...]]) -> list[Any]:
        connection.send_packed_command(connection.pack_commands(commands))
        return [connection.read_response() for _ in commands]


class AsyncCommandSender:
    """``CommandSender`` for an event loop: the readers' commands (a ``/wait``'s ``BLMOVE``,
    a stream's ``XREAD BLOCK``), on idle connections of its own, one loop's.

    redis-py's asyncio client adds the same layers as its sync one, and more: it sends
    every command inside ``asyncio.wait_for``, a task of its own per send. Here a read
    takes an idle connection (or opens one: there are as many as readers blocked at
    once), sends, reads the reply within ``timeout`` and puts the connection back. Replies
    come as Redis sends them (RESP3), unparsed. A read that fails to connect or times out is
    sent again once, on a fresh connection; a cancelled one closes its connection, which
    has a reply outstanding.
    """

    def __init__(self, url: str) -> None:
        # No socket timeout of the connection's own: each read says how long it may block.
        pool = aredis.ConnectionPool.from_url(url, socket_timeout=None, socket_connect_timeout=SOCKET_TIMEOUT)
        self.connection_class, self.connection_kwargs = pool.connection_class, pool.connection_kwargs
        self.idle: list[aredis.Connection] = []

    async def send(self, *command: Any, timeout: float = SOCKET_TIMEOUT) -> Any:
        """The reply to ``command``; an error reply raises ``ResponseError``."""
        connection = self.idle.pop() if self.idle else self.connection_class(**self.connection_kwargs)
        try:
            try:
                reply = await self._round_trip(connection, command, timeout)
            except (redis.ConnectionError, redis.TimeoutError):
                await connection.disconnect(nowait=True)
                reply = await self._round_trip(connection, command, timeout)  # on a new connection
        except BaseException:
            await connection.disconnect(nowait=True)  # its reply may still come
            raise
        self.idle.append(connection)
        return reply

    @staticmethod
    async def _round_trip(connection: aredis.Connection, command: tuple[Any, ...], timeout: float) -> Any:
        await connection.send_packed_command(connection.pack_command(*command), check_health=False)
        return await connection.read_response(timeout=timeout)


class _RedisCancelListener:
    """One pub/sub connection per process, for the cancel signals of all its runs."""

    PATTERN = f"{KEY_PREFIX}cancel:*"

    def __init__(self, url: str, router: CancelRouter) -> None:
        self.url, self.router, self.pid = url, router, os.getpid()
        self.pubsub = self._subscribe()  # before returning: later signals are not missed
        threading.Thread(target=self._listen, name="agentserver-cancels", daemon=True).start()

    def _subscribe(self) -> Any:
        pubsub = redis.Redis.from_url(self.url).pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(self.PATTERN)
        return pubsub

    def _listen(self) -> None:
        while True:
            try:
                for message in self.pubsub.listen():
                    if message["type"] == "pmessage":
                        run_id = message["channel"].decode().rsplit(":", 1)[1]
                        self.router.deliver(run_id, message["data"].decode())
            except redis.RedisError:
                # Redis went away: signals sent meanwhile are lost, but the heartbeat
                # also finds cancels recorded in the database.
                time.sleep(1)
                try:
                    self.pubsub = self._subscribe()
                except redis.RedisError:
                    continue


class RedisEventBus(EventBus):
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, max_connections=MAX_CONNECTIONS)
        self.sender = CommandSender(self.client.connection_pool)
        # One async sender per event loop: redis.asyncio connections are bound to a loop.
        self._async_senders: dict[asyncio.AbstractEventLoop, AsyncCommandSender] = {}
        self.cancels = CancelRouter()
        self._listener: _RedisCancelListener | None = None
        self._listener_lock = threading.Lock()

    def _async(self) -> AsyncCommandSender:
        loop = asyncio.get_running_loop()
        sender = self._async_senders.get(loop)
        if sender is None:
            sender = self._async_senders[loop] = AsyncCommandSender(self.url)
        return sender

    def _append(
        self, entries: list[tuple[str, str, bytes, str | None]], *, expire: list[str],
        outcome: tuple[str, bytes] | None = None,
    ) -> list[str]:
        maxlen = server_settings.STREAM_MAXLEN
        ttl = server_settings.STREAM_TTL_SECONDS
        commands: list[tuple[Any, ...]] = []
        for name, event, data, run_id in entries:
            fields = ("e", event, "d", data, *(("r", run_id) if run_id else ()))
            commands.append(("XADD", KEY_PREFIX + name, "MAXLEN", "~", maxlen, "*", *fields))
        commands += [("EXPIRE", KEY_PREFIX + name, ttl) for name in expire]
        if outcome is not None:
            # A one-item list, not a stream: a stream costs ~4.4 KB of Redis memory even
            # with one entry, a list ~0.25 KB, for as long as the run's events are retained.
            run_id, data = outcome
            key = KEY_PREFIX + run_end(run_id)
            commands += [("LPUSH", key, data), ("EXPIRE", key, ttl)]
        replies = self.sender.send(commands)
        return [entry_id.decode() for entry_id in replies[: len(entries)]]

    @staticmethod
    def _event(entry: list) -> Event:
        """An event from a stream entry as Redis sends it: ``[id, [field, value, ...]]``."""
        entry_id, flat = entry
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        run_id = fields.get(b"r")
        return Event(entry_id.decode(), fields[b"e"].decode(), fields[b"d"], run_id.decode() if run_id else None)

    async def _latest(self, name: str) -> Event | None:
        # Not XREAD's "$": entries arriving between two blocking reads would be lost.
        entries = await self._async().send("XREVRANGE", KEY_PREFIX + name, "+", "-", "COUNT", 1)
        return self._event(entries[0]) if entries else None

    async def oldest(self, run_id: str) -> Event | None:
        entries = await self._async().send("XRANGE", KEY_PREFIX + run_stream(run_id), "-", "+", "COUNT", 1)
        return self._event(entries[0]) if entries else None

    async def _read(self, name: str, after: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        sender, key = self._async(), KEY_PREFIX + name
        cursor = after
        block_ms = max(1, int(keepalive * 1000))
        while True:
            response = await sender.send(
                "XREAD", "COUNT", 500, "BLOCK", block_ms, "STREAMS", key, cursor, timeout=keepalive + SOCKET_TIMEOUT
            )
            if not response:
                yield HEARTBEAT
                continue
            (entries,) = response.values()  # RESP3: a map of the one stream read to its entries
            for entry in entries:
                event = self._event(entry)
                cursor = event.id
                yield event

    async def _read_end(self, run_id: str, keepalive: float) -> AsyncIterator[Event | Heartbeat]:
        """``BLMOVE`` of the one-item list onto itself: every reader gets the item, and it stays."""
        sender, key = self._async(), KEY_PREFIX + run_end(run_id)
        while True:
            data = await sender.send("BLMOVE", key, key, "RIGHT", "LEFT", keepalive, timeout=keepalive + SOCKET_TIMEOUT)
            if data is None:
                yield HEARTBEAT
                continue
            yield Event("0-0", END_EVENT, data)
            return

    def has_run(self, run_id: str) -> bool:
        return bool(self.client.exists(KEY_PREFIX + run_stream(run_id)))

    def signal_cancel(self, run_id: str, action: str) -> None:
        self.client.publish(f"{KEY_PREFIX}cancel:{run_id}", action)

    def watch_cancel(self, run_id: str) -> CancelWatch:
        self.listen_for_cancels()
        return self.cancels.watch(run_id)

    def listen_for_cancels(self) -> None:
        with self._listener_lock:
            # Again in a forked child: its parent's listener thread did not come along.
            if self._listener is None or self._listener.pid != os.getpid():
                self._listener = _RedisCancelListener(self.url, self.cancels)


@cache
def _bus_for(kind: str, url: str) -> EventBus:
    return RedisEventBus(url) if kind == "redis" else MemoryEventBus()


def get_event_bus() -> EventBus:
    """The process's event bus, created on first use from the current settings."""
    return _bus_for(server_settings.EVENT_BUS, settings.REDIS_URL)
