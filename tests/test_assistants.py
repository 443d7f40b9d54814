"""Assistants over HTTP with the unmodified langgraph-sdk (api-reference §1.2, §9 items 1 and 21)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from langchain_core.runnables.graph import Edge as DrawableEdge
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

from tests.live import LiveServer

AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
SCHEMA_KEYS = {"input_schema", "output_schema", "state_schema", "config_schema", "context_schema"}


def tag() -> dict[str, str]:
    """Metadata unique to one test, so searches ignore what other tests created."""
    return {"suite": uuid.uuid4().hex}


def assert_iso_with_offset(value: str) -> None:
    assert datetime.fromisoformat(value).utcoffset() is not None, value


# ---------------------------------------------------------------- default assistants


async def test_default_assistant_id_is_uuid5_of_graph_name(client) -> None:
    found = await client.assistants.search(graph_id="agent", metadata={"created_by": "system"})
    assert [a["assistant_id"] for a in found] == [AGENT_ID]
    agent = found[0]
    assert agent["name"] == "agent"
    assert agent["metadata"] == {"created_by": "system"}
    assert agent["config"] == {} and agent["context"] == {} and agent["version"] == 1
    assert_iso_with_offset(agent["created_at"])
    assert_iso_with_offset(agent["updated_at"])


async def test_graph_name_is_accepted_as_assistant_id(client) -> None:
    assert (await client.assistants.get("agent"))["assistant_id"] == AGENT_ID
    factory = await client.assistants.get("configurable")
    assert factory["description"] == "A graph factory taking the config."


# ---------------------------------------------------------------- create, update, versions


async def test_create_defaults_and_if_exists(client) -> None:
    created = await client.assistants.create("echo", metadata=tag())
    assert created["name"] == "Untitled" and created["version"] == 1
    assert uuid.UUID(created["assistant_id"]).version == 4
    same = await client.assistants.create(
        "echo", assistant_id=created["assistant_id"], if_exists="do_nothing", name="other"
    )
    assert same == created
    with pytest.raises(ConflictError):
        await client.assistants.create("echo", assistant_id=created["assistant_id"])
    with pytest.raises(NotFoundError):
        await client.assistants.create("no-such-graph")


async def test_create_keeps_configurable_and_context_in_step(client) -> None:
    created = await client.assistants.create("configurable", config={"configurable": {"greeting": "hi"}})
    assert created["context"] == {"greeting": "hi"}
    with pytest.raises(BadRequestError):
        await client.assistants.create("echo", config={"configurable": {"a": 1}}, context={"a": 2})


async def test_update_bumps_version_and_becomes_latest(client) -> None:
    created = await client.assistants.create("echo", name="v1", metadata={"keep": 1})
    updated = await client.assistants.update(
        created["assistant_id"], name="v2", metadata={"added": 2}, context={"k": "v"}
    )
    assert updated["version"] == 2 and updated["name"] == "v2"
    assert updated["metadata"] == {"keep": 1, "added": 2}
    assert updated["context"] == {"k": "v"}
    assert updated["created_at"] == created["created_at"]
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    assert await client.assistants.get(created["assistant_id"]) == updated
    with pytest.raises(NotFoundError):
        await client.assistants.update(str(uuid.uuid4()), name="x")


async def test_versions_newest_first_and_set_latest(client) -> None:
    assistant_id = (await client.assistants.create("echo", name="first"))["assistant_id"]
    await client.assistants.update(assistant_id, name="second", metadata={"step": 2})
    await client.assistants.update(assistant_id, name="third", metadata={"step": 3})
    versions = await client.assistants.get_versions(assistant_id)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["name"] for v in versions] == ["third", "second", "first"]
    assert "updated_at" not in versions[0]
    assert [v["version"] for v in await client.assistants.get_versions(assistant_id, limit=1, offset=1)] == [2]
    only = await client.assistants.get_versions(assistant_id, metadata={"step": 2})
    assert [v["version"] for v in only] == [2]

    latest = await client.assistants.set_latest(assistant_id, 1)
    assert latest["version"] == 1 and latest["name"] == "first"
    after = await client.assistants.update(assistant_id, name="fourth")
    assert after["version"] == 4
    with pytest.raises(NotFoundError):
        await client.assistants.set_latest(assistant_id, 99)
    with pytest.raises(NotFoundError):
        await client.assistants.get_versions(str(uuid.uuid4()))


# ---------------------------------------------------------------- search and count


async def test_search_filters_by_metadata_graph_and_name(client) -> None:
    meta = tag()
    await client.assistants.create("echo", name="Alpha Bot", metadata={**meta, "team": {"id": 1, "x": "y"}})
    await client.assistants.create("chain10", name="beta bot", metadata={**meta, "team": {"id": 2}})
    await client.assistants.create("echo", name="gamma", metadata=meta)

    assert len(await client.assistants.search(metadata=meta)) == 3
    assert {a["name"] for a in await client.assistants.search(metadata=meta, graph_id="echo")} == {
        "Alpha Bot",
        "gamma",
    }
    assert {a["name"] for a in await client.assistants.search(metadata=meta, name="BOT")} == {
        "Alpha Bot",
        "beta bot",
    }
    nested = await client.assistants.search(metadata={**meta, "team": {"id": 1}})
    assert [a["name"] for a in nested] == ["Alpha Bot"]
    assert await client.assistants.count(metadata=meta) == 3
    assert await client.assistants.count(metadata=meta, graph_id="chain10") == 1
    assert await client.assistants.count(metadata=meta, name="alpha") == 1
    with pytest.raises(NotFoundError):
        await client.assistants.search(graph_id="no-such-graph")


async def test_search_pages_with_next_cursor_sort_and_select(client) -> None:
    meta = tag()
    for name in ["c", "a", "b"]:
        await client.assistants.create("echo", name=name, metadata=meta)

    newest_first = await client.assistants.search(metadata=meta)
    assert [a["name"] for a in newest_first] == ["b", "a", "c"]
    page = await client.assistants.search(metadata=meta, limit=2, response_format="object")
    assert [a["name"] for a in page["assistants"]] == ["b", "a"] and page["next"] == "2"
    last = await client.assistants.search(metadata=meta, limit=2, offset=2, response_format="object")
    assert [a["name"] for a in last["assistants"]] == ["c"] and last["next"] is None

    by_name = await client.assistants.search(
        metadata=meta, sort_by="name", sort_order="asc", select=["assistant_id", "name"]
    )
    assert [a["name"] for a in by_name] == ["a", "b", "c"]
    assert set(by_name[0]) == {"assistant_id", "name"}


def test_search_sets_pagination_headers(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/assistants/search", json={"limit": 1})
    assert response.status_code == 200
    total = int(response.headers["x-pagination-total"])
    assert total >= 11 and response.headers["x-pagination-next"] == "1"
    assert len(response.json()) == 1


# ---------------------------------------------------------------- delete


def _insert_thread(server: LiveServer, metadata: dict) -> str:
    """Threads made straight in the server's database, so this file does not depend on /threads."""
    thread_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    stamp = now if server.mode == "prod" else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    row = (thread_id, stamp, stamp, json.dumps(metadata), "{}", "idle", "{}", "")
    sql = (
        "INSERT INTO threads_thread (thread_id, created_at, updated_at, metadata, config, status, "
        "interrupts, ttl_strategy) VALUES ({})"
    )
    if server.mode == "prod":
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute(sql.format(", ".join(["%s"] * 8)), row)
    else:
        with sqlite3.connect(server.tmp / "dev.sqlite3") as conn:
            conn.execute(sql.format(", ".join(["?"] * 8)), (thread_id.replace("-", ""), *row[1:]))
    return thread_id


def _thread_exists(server: LiveServer, thread_id: str) -> bool:
    if server.mode == "prod":
        with psycopg.connect(server.database_url) as conn:
            row = conn.execute("SELECT 1 FROM threads_thread WHERE thread_id = %s", (thread_id,))
            return row.fetchone() is not None
    with sqlite3.connect(server.tmp / "dev.sqlite3") as conn:
        row = conn.execute("SELECT 1 FROM threads_thread WHERE thread_id = ?", (thread_id.replace("-", ""),))
        return row.fetchone() is not None


async def test_delete_with_and_without_threads(client, server: LiveServer) -> None:
    keep = (await client.assistants.create("echo"))["assistant_id"]
    drop = (await client.assistants.create("echo"))["assistant_id"]
    kept_thread = _insert_thread(server, {"assistant_id": keep})
    dropped_thread = _insert_thread(server, {"assistant_id": drop, "graph_id": "echo"})
    other_thread = _insert_thread(server, {"assistant_id": str(uuid.uuid4())})

    assert await client.assistants.delete(keep) is None
    assert await client.assistants.delete(drop, delete_threads=True) is None
    for gone in (keep, drop):
        with pytest.raises(NotFoundError):
            await client.assistants.get(gone)
    assert _thread_exists(server, kept_thread)
    assert not _thread_exists(server, dropped_thread)
    assert _thread_exists(server, other_thread)
    with pytest.raises(NotFoundError):
        await client.assistants.delete(drop)


# ---------------------------------------------------------------- graph, schemas, subgraphs


@pytest.mark.parametrize("xray", [False, True, 1])
def test_remote_graph_draws_the_graph(server: LiveServer, xray: bool | int) -> None:
    drawable = RemoteGraph("nested", url=server.url).get_graph(xray=xray)
    names = set(drawable.nodes)
    assert {"__start__", "plan", "finish", "__end__"} <= names
    assert ("worker" in names) is not bool(xray)
    assert any("research" in name for name in names) is bool(xray)
    assert drawable.draw_mermaid()


async def test_graph_edges_build_drawable_edges(client) -> None:
    for assistant_id in ["agent", "configurable", AGENT_ID]:
        graph = await client.assistants.get_graph(assistant_id, xray=True)
        assert graph["nodes"] and graph["edges"]
        for node in graph["nodes"]:
            assert "id" not in node.get("data", {})
        for edge in graph["edges"]:
            DrawableEdge(**edge)


async def test_schemas_have_the_six_keys(client) -> None:
    schemas = await client.assistants.get_schemas("nested")
    assert set(schemas) == {"graph_id"} | SCHEMA_KEYS
    assert schemas["graph_id"] == "nested"
    assert "items" in schemas["input_schema"]["properties"]
    assert "items" in schemas["state_schema"]["properties"]
    factory = await client.assistants.get_schemas("configurable")
    assert set(factory) == {"graph_id"} | SCHEMA_KEYS


async def test_subgraphs_by_namespace_and_recursion(client) -> None:
    subgraphs = await client.assistants.get_subgraphs("nested")
    assert list(subgraphs) == ["worker"]
    assert set(subgraphs["worker"]) == SCHEMA_KEYS
    assert "items" in subgraphs["worker"]["input_schema"]["properties"]
    assert list(await client.assistants.get_subgraphs("nested", namespace="worker")) == ["worker"]
    assert list(await client.assistants.get_subgraphs("nested", recurse=True)) == ["worker"]
    assert await client.assistants.get_subgraphs("nested", namespace="nope") == {}
    assert await client.assistants.get_subgraphs("echo") == {}


# ---------------------------------------------------------------- the sync client


def test_sync_client_smoke(sync_client) -> None:
    assert sync_client.assistants.get("agent")["assistant_id"] == AGENT_ID
    created = sync_client.assistants.create("echo", name="sync", metadata=tag())
    assert sync_client.assistants.update(created["assistant_id"], name="sync2")["version"] == 2
    assert sync_client.assistants.count(metadata=created["metadata"]) == 1
    assert sync_client.assistants.get_graph("echo")["edges"]
    assert set(sync_client.assistants.get_schemas("echo")) == {"graph_id"} | SCHEMA_KEYS
    sync_client.assistants.delete(created["assistant_id"])
    with pytest.raises(NotFoundError):
        sync_client.assistants.get(created["assistant_id"])


# ---------------------------------------------------------------- bad input


BAD_REQUESTS = [
    ("GET", "/assistants/not-a-uuid", None, 422),
    ("PATCH", "/assistants/not-a-uuid", {"name": "x"}, 422),
    ("DELETE", "/assistants/not-a-uuid", None, 422),
    ("GET", "/assistants/not-a-uuid/graph", None, 422),
    ("GET", "/assistants/not-a-uuid/schemas", None, 422),
    ("POST", "/assistants/not-a-uuid/versions", {}, 422),
    ("GET", f"/assistants/{uuid.uuid4()}", None, 404),
    ("GET", f"/assistants/{uuid.uuid4()}/schemas", None, 404),
    ("GET", f"/assistants/{uuid.uuid4()}/subgraphs", None, 404),
    ("DELETE", f"/assistants/{uuid.uuid4()}", None, 404),
    ("POST", f"/assistants/{uuid.uuid4()}/latest", {"version": 1}, 404),
    ("POST", "/assistants", {"graph_id": "no-such-graph"}, 404),
    ("POST", "/assistants", {}, 422),
    ("POST", "/assistants", b"{not json", 422),
    ("POST", "/assistants", [1, 2], 422),
    ("POST", "/assistants", {"graph_id": 123}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "assistant_id": "nope"}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "metadata": [1]}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": "x"}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": {"recursion_limit": "many"}}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "config": {"tags": [1]}}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "if_exists": "update"}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "name": ["x"]}, 422),
    ("PATCH", "/assistants/agent", {"graph_id": "no-such-graph"}, 404),
    ("PATCH", "/assistants/agent", {"config": {"configurable": []}}, 422),
    ("POST", "/assistants/search", {"select": ["nope"]}, 422),
    ("POST", "/assistants/search", {"select": "name"}, 422),
    ("POST", "/assistants/search", {"sort_by": "version"}, 422),
    ("POST", "/assistants/search", {"sort_order": "sideways"}, 422),
    ("POST", "/assistants/search", {"limit": "ten"}, 422),
    ("POST", "/assistants/search", {"limit": 0}, 422),
    ("POST", "/assistants/search", {"offset": -1}, 422),
    ("POST", "/assistants/search", {"offset": 2**64 - 1}, 422),
    ("POST", "/assistants/search", {"metadata": {"a": "\u0000"}}, 422),
    ("POST", "/assistants", {"graph_id": "echo", "context": {"k": "\u0000"}}, 422),
    ("POST", "/assistants/search", {"metadata": "x"}, 422),
    ("POST", "/assistants/search", b"[", 422),
    ("POST", "/assistants/count", {"graph_id": {"a": 1}}, 422),
    ("POST", "/assistants/agent/versions", {"limit": "x"}, 422),
    ("POST", "/assistants/agent/latest", {}, 422),
    ("POST", "/assistants/agent/latest", {"version": "one"}, 422),
    ("GET", "/assistants/agent/graph?xray=maybe", None, 422),
    ("GET", "/assistants/agent/graph?xray=-1", None, 422),
    ("GET", "/assistants/agent/subgraphs?recurse=perhaps", None, 422),
    ("DELETE", "/assistants/agent?delete_threads=perhaps", None, 422),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_detail(
    server: LiveServer, method: str, path: str, body: object, expected: int
) -> None:
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    response = httpx.request(
        method, f"{server.url}{path}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == expected, response.text
    assert isinstance(response.json()["detail"], str)


def test_malformed_id_wording(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/assistants/not-a-uuid")
    assert response.json() == {"detail": "Invalid assistant ID: must be a UUID"}
    invalid = httpx.post(f"{server.url}/assistants", content=b"{oops")
    assert invalid.json() == {"detail": "Invalid JSON in request body"}


async def test_sdk_raises_unprocessable_for_bad_ids(client) -> None:
    with pytest.raises(UnprocessableEntityError):
        await client.assistants.get("not-a-uuid")
    with pytest.raises(UnprocessableEntityError):
        await client.assistants.search(select=["nope"])
