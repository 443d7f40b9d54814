"""RabbitMQ as the Celery broker (Redis still carries the event streams and the queue of
runs ready to start; a run that must wait travels as a Celery message)."""

from __future__ import annotations

import os

from langgraph_sdk import get_client

from tests.live import LiveServer

RABBIT = os.environ.get("AGENTSERVER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


async def test_runs_execute_through_rabbitmq() -> None:
    live = LiveServer(mode="prod", extra_env={"CELERY_BROKER_URL": RABBIT}).start()
    try:
        async with get_client(url=live.url, api_key=None) as client:
            thread = await client.threads.create()
            result = await client.runs.wait(thread["thread_id"], "echo", input={"items": ["amqp"]})
            assert result == {"items": ["amqp", "echo:amqp"]}
            parts = [p.event async for p in client.runs.stream(None, "chain10", input={"items": ["s"]})]
            assert parts[0] == "metadata" and parts.count("values") == 11
            delayed = await client.runs.wait(
                thread["thread_id"], "echo", input={"items": ["later"]}, after_seconds=0.5
            )
            assert delayed == {"items": ["amqp", "echo:amqp", "later", "echo:later"]}
    finally:
        live.stop()
