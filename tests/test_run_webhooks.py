"""Webhooks and run timeouts end to end: a real worker posts to a real local receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from langgraph_sdk import get_client

from tests.live import LiveServer
from tests.receiver import Receiver

SECRET = "test-webhook-secret"


@pytest.fixture(scope="module")
def hooked() -> Iterator[LiveServer]:
    live = LiveServer(
        mode="prod",
        extra_env={
            "AGENTSERVER_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
            "AGENTSERVER_WEBHOOK_SECRET": SECRET,
            "AGENTSERVER_RUN_TIMEOUT_SECONDS": "2",
        },
    ).start()
    yield live
    live.stop()


@pytest.fixture
async def sdk(hooked: LiveServer) -> AsyncIterator:
    async with get_client(url=hooked.url, api_key=None) as client:
        yield client


async def deliveries(receiver: Receiver, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return [orjson.loads(r.body) for r in receiver.requests]


async def test_webhook_delivered_once_per_finished_run(sdk, receiver: Receiver) -> None:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    await sdk.runs.wait(tid, "echo", input={"items": ["w"]}, webhook=receiver.url)
    [body] = await deliveries(receiver, 1)
    assert body["status"] == "success"
    assert body["thread_id"] == tid
    assert body["values"] == {"items": ["w", "echo:w"]}
    assert {"run_id", "assistant_id", "run_started_at", "run_ended_at", "webhook_sent_at"} <= set(body)
    request = receiver.requests[0]
    header = request.headers["X-Agentserver-Signature"]
    stamp, signature = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    await asyncio.sleep(1)
    assert len(receiver.requests) == 1


async def test_webhook_reports_failures(sdk, receiver: Receiver) -> None:
    thread = await sdk.threads.create()
    await sdk.runs.wait(thread["thread_id"], "fail", input={"items": ["x"]}, webhook=receiver.url, raise_error=False)
    [body] = await deliveries(receiver, 1)
    assert body["status"] == "error"
    assert body["error"]["error"] == "ValueError"


async def test_webhook_retries_a_failing_receiver(sdk, receiver: Receiver) -> None:
    receiver.answer(500, 503)
    await sdk.runs.wait(None, "echo", input={"items": ["r"]}, webhook=receiver.url)
    bodies = await deliveries(receiver, 3)
    assert len(bodies) == 3 and {b["run_id"] for b in bodies} == {bodies[0]["run_id"]}


async def test_run_timeout_ends_the_run_as_timeout(sdk) -> None:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    result = await sdk.runs.wait(tid, "slow", input={"items": ["sleep:1"]}, raise_error=False)
    assert result["__error__"]["error"] == "TimeoutError"
    run = (await sdk.runs.list(tid))[0]
    assert run["status"] == "timeout"
    assert (await sdk.threads.get(tid))["status"] == "error"
