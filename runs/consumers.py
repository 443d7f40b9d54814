"""The v2 protocol over a websocket: ``/threads/{thread_id}/stream/events``.

Every text message from the client is a protocol command. Subscription commands
(``subscription.subscribe|unsubscribe|reconnect``) choose which of the thread's protocol
events this socket receives; the others (``run.start``, ``input.respond``,
``agent.getTree``) are answered as on ``POST /threads/{tid}/commands``.

One reader task per socket translates the thread stream from its start (the same
numbering as every other reader, see ``runs.protocol.translate``) into a bounded replay
buffer and sends each event once if any subscription wants it. A subscription with
``since`` first replays the buffered events after that seq; the reader and the replay
share a lock, so nothing is lost or sent twice in between. Errors that end the socket
use close codes 4000 + HTTP status (4404: no such thread), which the SDK reads as final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from runs.protocol import commands
from runs.protocol.source import EventFilter, InvalidFilter, parse_since, protocol_events
from runs.threadstream import thread_exists

logger = logging.getLogger(__name__)

REPLAY_BUFFER = 10_000


@dataclass
class Subscription:
    filter: EventFilter
    since: int | None = None

    def wants(self, event: dict) -> bool:
        return (self.since is None or event["seq"] > self.since) and self.filter.matches(event)


class ThreadEventsConsumer(AsyncWebsocketConsumer):
    thread_id: str
    reader: asyncio.Task | None = None

    async def connect(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.buffer: deque[dict] = deque(maxlen=REPLAY_BUFFER)
        self.seq = 0
        self.lock = asyncio.Lock()
        await self.accept()
        try:
            self.thread_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["thread_id"]))
        except ValueError:
            await self.close(code=4422)
            return
        if not await thread_exists(self.thread_id):
            await self.close(code=4404)
            return
        self.reader = asyncio.create_task(self._read())

    async def disconnect(self, code: int) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader

    async def _read(self) -> None:
        try:
            async for batch in protocol_events(self.thread_id):
                async with self.lock:
                    for event in batch or ():
                        self.buffer.append(event)
                        self.seq = event["seq"]
                        if any(sub.wants(event) for sub in self.subscriptions.values()):
                            await self._send(event)
            await self.close(code=1000)  # the thread is gone
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Thread event stream of %s failed", self.thread_id)
            await self.close(code=1011)

    async def _send(self, message: dict) -> None:
        await self.send(text_data=orjson.dumps(message).decode())

    # ------------------------------------------------------------------ commands

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            payload = orjson.loads(text_data if text_data is not None else bytes_data or b"")
        except orjson.JSONDecodeError:
            await self._send(commands.error(None, "invalid_argument", "Protocol commands must be valid JSON."))
            return
        if not commands.is_command(payload):
            command_id = payload.get("id") if isinstance(payload, dict) else None
            await self._send(commands.error(command_id, "invalid_argument", commands.MALFORMED))
            return
        method = payload["method"]
        if method in ("subscription.subscribe", "subscription.reconnect"):
            reply = await self._subscribe(payload)
        elif method == "subscription.unsubscribe":
            reply = self._unsubscribe(payload)
        else:
            headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in self.scope.get("headers", [])}
            reply = await commands.handle_command(self.thread_id, payload, headers=headers)
        await self._send(reply)

    async def _subscribe(self, command: dict) -> dict:
        """Register a subscription after replaying the buffered events it asks for."""
        params = command.get("params") or {}
        if command["method"] == "subscription.reconnect" and not (isinstance(params, dict) and "channels" in params):
            # Subscriptions live as long as their socket: named ones of an old socket are gone.
            return commands.success(command["id"], {"restored": False, "missed_events": 0}, self.seq)
        try:
            subscription = Subscription(EventFilter.parse(params), parse_since(self._since(params)))
        except InvalidFilter as exc:
            return commands.error(command["id"], "invalid_argument", str(exc))
        requested_id = params.get("subscription_id")
        subscription_id = requested_id if isinstance(requested_id, str) and requested_id else str(uuid.uuid4())
        async with self.lock:
            replay = [event for event in self.buffer if subscription.wants(event)]
            for event in replay:
                await self._send(event)
            self.subscriptions[subscription_id] = subscription
            seq = self.seq
        result: dict[str, Any] = {"subscription_id": subscription_id, "replayed_events": len(replay)}
        if command["method"] == "subscription.reconnect":
            result["restored"] = True
        return commands.success(command["id"], result, seq)

    @staticmethod
    def _since(params: dict) -> Any:
        """``since``; a reconnect may name its cursor ``last_event_id`` (a seq, as text)."""
        since = params.get("since")
        last = params.get("last_event_id")
        if since is None and isinstance(last, str) and last.isdigit():
            return int(last)
        return since

    def _unsubscribe(self, command: dict) -> dict:
        subscription_id = (command.get("params") or {}).get("subscription_id")
        if not isinstance(subscription_id, str):
            return commands.error(command["id"], "invalid_argument", "subscription.unsubscribe requires a subscription_id.")
        if self.subscriptions.pop(subscription_id, None) is None:
            return commands.error(command["id"], "no_such_subscription", f"Unknown subscription: {subscription_id}")
        return commands.success(command["id"], {}, self.seq)
