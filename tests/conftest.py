from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from langgraph_sdk import get_client, get_sync_client

from tests.live import LiveServer

# The webhook receiver fixture (a real HTTP server).
pytest_plugins = ["tests.receiver"]


@pytest.fixture(scope="session", params=["prod", "dev"])
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live deployment, once on Postgres + Redis + Celery ("prod") and once as `manage.py dev`."""
    live = LiveServer(mode=request.param).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def prod_server() -> Iterator[LiveServer]:
    """Only the production setup, for tests about workers, Redis and Postgres."""
    live = LiveServer(mode="prod").start()
    yield live
    live.stop()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator:
    async with get_client(url=server.url, api_key=None) as sdk:
        yield sdk


@pytest.fixture
def sync_client(server: LiveServer) -> Iterator:
    with get_sync_client(url=server.url, api_key=None) as sdk:
        yield sdk
