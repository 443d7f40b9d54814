"""Streams that survive what networks do: other web processes, cut connections, expiry, load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest
import redis
from django.core.handlers.asgi import ASGIHandler
from langgraph_sdk import get_client

from agentserver.streaming import StreamingResponse, send_until_disconnect
from tests.live import LiveServer

NODES = [f"n{i}" for i in range(10)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LiveServer]:
    """Production setup with two web processes and events kept for two seconds after a run."""
    live = LiveServer(mode="prod", extra_env={"AGENTSERVER_STREAM_TTL_SECONDS": "2"}).start()
    live.second_url = live.start_extra_web()
    yield live
    live.stop()


@pytest.fixture
async def clients(cluster: LiveServer) -> AsyncIterator[tuple]:
    async with get_client(url=cluster.url, api_key=None) as one, get_client(url=cluster.second_url, api_key=None) as two:
        yield one, two


class CuttingProxy:
    """A TCP proxy that cuts its first connection after ``cut_after`` bytes from the server."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.connections = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut = self.cut_after if self.connections == 1 else None
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(reader, writer, limit):
            sent = 0
            try:
                while chunk := await reader.read(4096):
                    if limit is not None and sent + len(chunk) > limit:
                        writer.write(chunk[: limit - sent])
                        await writer.drain()
                        break
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pipe(client_reader, server_writer, None), pipe(server_reader, client_writer, cut), return_exceptions=True
        )
        server_writer.close()
        client_writer.close()


async def test_start_on_one_web_process_join_and_cancel_on_another(clients) -> None:
    one, two = clients
    thread = await one.threads.create()
    tid = thread["thread_id"]
    run = await one.runs.create(tid, "slow", input={"items": ["sleep:0.3"]}, stream_mode="updates")
    joined = [p async for p in two.runs.join_stream(tid, run["run_id"], last_event_id="-1")]
    assert [next(iter(p.data)) for p in joined if p.event == "updates"] == [f"s{i}" for i in range(5)]
    second = await one.runs.create(tid, "slow", input={"items": ["sleep:1"]})
    await asyncio.sleep(0.5)
    await two.runs.cancel(tid, second["run_id"])
    assert (await one.runs.get(tid, second["run_id"]))["status"] == "interrupted"


async def test_sdk_reconnects_after_a_cut_and_sees_each_event_once(cluster: LiveServer) -> None:
    async with get_client(url=cluster.url, api_key=None) as direct:
        thread = await direct.threads.create()
    proxy = CuttingProxy(cluster.port, cut_after=800)
    url = await proxy.start()
    async with get_client(url=url, api_key=None) as client:
        parts = [
            part
            async for part in client.runs.stream(
                thread["thread_id"], "slow", input={"items": ["sleep:0.2"]}, stream_mode="updates",
                stream_resumable=True,
            )
        ]
    proxy.server.close()
    assert proxy.connections >= 2  # the cut stream, then the resumed one
    ids = [p.id for p in parts]
    assert len(ids) == len(set(ids))
    assert [next(iter(p.data)) for p in parts if p.event == "updates"] == [f"s{i}" for i in range(5)]
    assert [p.event for p in parts].count("metadata") == 1


async def test_join_after_events_expired_gets_an_error_frame(clients) -> None:
    one, _ = clients
    thread = await one.threads.create()
    tid = thread["thread_id"]
    parts = [p async for p in one.runs.stream(tid, "echo", input={"items": ["e"]}, stream_resumable=True)]
    run_id = parts[0].data["run_id"]
    await asyncio.sleep(3)
    late = [p async for p in one.runs.join_stream(tid, run_id, last_event_id="-1")]
    assert [p.event for p in late] == ["error"]
    assert late[0].data["error"] == "StreamExpired"


async def test_hundred_concurrent_streams_lose_and_repeat_nothing(server: LiveServer, client) -> None:
    async def one_stream(i: int) -> list:
        return [
            p async for p in client.runs.stream(None, "chain10", input={"items": [str(i)]}, stream_mode="updates")
        ]

    results = await asyncio.gather(*(one_stream(i) for i in range(100)))
    run_ids = set()
    for parts in results:
        assert parts[0].event == "metadata"
        run_ids.add(parts[0].data["run_id"])
        assert [next(iter(p.data)) for p in parts[1:]] == NODES
    assert len(run_ids) == 100


@pytest.fixture(scope="module")
def dev_short_retention() -> Iterator[LiveServer]:
    """`manage.py dev` keeping events for three seconds after a run."""
    live = LiveServer(mode="dev", extra_env={"AGENTSERVER_STREAM_TTL_SECONDS": "3"}).start()
    yield live
    live.stop()


async def test_dev_drops_expired_events_and_keeps_a_thread_stream_a_later_run_renewed(dev_short_retention) -> None:
    async with get_client(url=dev_short_retention.url, api_key=None) as client:
        thread = (await client.threads.create())["thread_id"]
        first = await client.runs.create(thread, "echo", input={"items": ["first"]})
        await client.runs.join(thread, first["run_id"])
        await asyncio.sleep(1.8)
        second = await client.runs.create(thread, "echo", input={"items": ["second"]})
        await client.runs.join(thread, second["run_id"])  # the thread's stream is kept 3 s more
        await asyncio.sleep(1.8)
        # The first run's events are due: the next run's end drops them.
        await client.runs.wait(None, "echo", input={"items": ["other"]})

        late = [p async for p in client.runs.join_stream(thread, first["run_id"], last_event_id="-1")]
        assert [p.event for p in late] == ["error"]
        assert late[0].data["error"] == "StreamExpired"
        replay: list = []
        async with asyncio.timeout(10):
            async for part in await client.threads.join_stream(thread, last_event_id="-1"):
                replay.append(part)
                if part.event == "values" and part.data["items"][-1] == "echo:second":
                    break
        assert {"run_id": second["run_id"], "attempt": 1} in [p.data for p in replay if p.event == "metadata"]


async def test_more_waiting_clients_than_a_redis_pool_holds_all_get_their_output(prod_server: LiveServer) -> None:
    """Each waiting client holds a Redis connection in a blocking read; 150 at once on one web
    process must all be served (redis-py's pools stop at 100 connections unless told otherwise).
    Two SDK clients: one keeps at most 100 connections of its own."""
    async with get_client(url=prod_server.url, api_key=None) as one, get_client(url=prod_server.url, api_key=None) as two:

        async def wait(i: int) -> dict:
            # Due in 3 s: every client is waiting before the first run starts.
            client = one if i % 2 else two
            return await client.runs.wait(None, "echo", input={"items": [str(i)]}, after_seconds=3)

        results = await asyncio.gather(*(wait(i) for i in range(150)))
    assert results == [{"items": [str(i), f"echo:{i}"]} for i in range(150)]


async def test_events_still_arrive_after_redis_dropped_the_connections_that_publish_them(
    prod_server: LiveServer,
) -> None:
    """Redis may close idle connections (a restart, its ``timeout``, a proxy): the appends of
    the web process (a run's first event) and of the worker reconnect, and lose nothing."""
    admin = redis.Redis.from_url(prod_server.redis_url)

    def appenders() -> list[int]:
        db = str(prod_server.redis_db)
        return [c["id"] for c in admin.client_list() if c["db"] == db and c.get("cmd") in {"xadd", "expire", "lpush"}]

    async with get_client(url=prod_server.url, api_key=None) as client:
        await client.runs.wait(None, "echo", input={"items": ["warm"]})
        dropped = appenders()
        assert dropped
        for client_id in dropped:
            admin.client_kill_filter(_id=client_id)
        parts = [part async for part in client.runs.stream(None, "echo", input={"items": ["after"]})]
    assert [part.event for part in parts] == ["metadata", "values", "values"]
    assert parts[-1].data == {"items": ["after", "echo:after"]}


async def test_a_streamed_body_the_server_stops_sending_is_closed_at_once() -> None:
    """What Django's ASGI handler does when the client leaves during a send: it closes the
    response's iterator. The body's ``finally`` (``on_disconnect=cancel`` cancels the run
    there) must run then, not whenever the abandoned generator is collected."""
    closed: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            yield b"second"
        finally:
            closed.append("closed")

    response = StreamingResponse(body())
    async with aclosing(aiter(response)) as content:
        async for _ in content:
            break  # the send of the first chunk failed
    assert closed == ["closed"]


async def test_a_stream_whose_body_absorbs_the_cancel_ends_at_its_next_chunk() -> None:
    """Python 3.11's ``asyncio.wait_for`` (redis-py awaits each command's send with it)
    swallows a cancellation that arrives as the awaited result does. When the client leaves,
    the handler cancels the sending of the body; if that cancellation is lost, the stream
    must still end at the body's next chunk, so its ``finally`` (where ``on_disconnect=cancel``
    cancels the run) runs then, not when the run ends."""
    closed: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            with contextlib.suppress(asyncio.CancelledError):  # the lost cancellation
                await asyncio.sleep(30)
            yield b"second"
            closed.append("went on")
            await asyncio.sleep(30)
            yield b"third"
        finally:
            closed.append("closed")

    client_left = asyncio.Event()
    bodies: list[bytes] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message.get("body", b""))
            client_left.set()

    async def receive() -> dict:
        await client_left.wait()
        return {"type": "http.disconnect"}

    handler = ASGIHandler.__new__(ASGIHandler)  # its send_response needs no middleware chain
    streaming = send_until_disconnect(handler.send_response, StreamingResponse(body()), receive, send)
    await asyncio.wait_for(streaming, 10)
    assert closed == ["closed"]
