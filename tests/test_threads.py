"""Threads over HTTP with the unmodified langgraph-sdk (api-reference §1.3, §3.9, §9 item 18)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError

from tests.live import LiveServer

THREAD_KEYS = {
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
    "error",
}


def tag() -> dict[str, str]:
    """Metadata unique to one test, so searches ignore what other tests created."""
    return {"suite": uuid.uuid4().hex}


def steps(*updates: tuple[dict, str]) -> list[dict]:
    """Supersteps for threads.create: one superstep per (values, as_node)."""
    return [{"updates": [{"values": values, "as_node": node}]} for values, node in updates]


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed


# ---------------------------------------------------------------- create, get


async def test_create_returns_a_fresh_idle_thread(client) -> None:
    meta = tag()
    thread = await client.threads.create(metadata=meta, graph_id="echo")
    assert THREAD_KEYS <= set(thread)
    assert uuid.UUID(thread["thread_id"]).version == 7
    assert thread["metadata"] == {**meta, "graph_id": "echo"}
    assert thread["status"] == "idle"
    assert thread["values"] is None and thread["interrupts"] == {} and thread["error"] is None
    parse_time(thread["created_at"])
    assert await client.threads.get(thread["thread_id"]) == thread


async def test_create_with_existing_id_raises_or_returns_existing(client) -> None:
    thread_id = str(uuid.uuid4())
    first = await client.threads.create(thread_id=thread_id, metadata={"n": 1})
    assert first["thread_id"] == thread_id
    with pytest.raises(ConflictError, match=f"Thread with ID {thread_id} already exists"):
        await client.threads.create(thread_id=thread_id)
    again = await client.threads.create(thread_id=thread_id, metadata={"n": 2}, if_exists="do_nothing")
    assert again == first


async def test_get_missing_thread_is_404(client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"Thread with ID {missing} not found"):
        await client.threads.get(missing)


async def test_create_replays_supersteps_into_state(client) -> None:
    thread = await client.threads.create(
        graph_id="chain10", supersteps=steps(({"items": ["a"]}, "n0"), ({"items": ["b"]}, "n1"))
    )
    assert thread["values"] == {"items": ["a", "b"]}
    assert thread["status"] == "interrupted"  # n2 is pending
    assert thread["state_updated_at"] is not None
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"] == {"items": ["a", "b"]} and state["next"] == ["n2"]
    assert len(await client.threads.get_history(thread["thread_id"], limit=10)) == 2


async def test_create_replays_a_command_update(client) -> None:
    thread = await client.threads.create(
        graph_id="echo",
        supersteps=[
            {"updates": [{"values": None, "command": {"update": {"items": ["c"]}}, "as_node": "echo"}]}
        ],
    )
    assert thread["values"] == {"items": ["c"]} and thread["status"] == "idle"


async def test_bad_superstep_leaves_no_thread_behind(client) -> None:
    thread_id = str(uuid.uuid4())
    with pytest.raises(BadRequestError):
        await client.threads.create(
            thread_id=thread_id, graph_id="echo", supersteps=steps(({"items": ["x"]}, "no_such_node"))
        )
    with pytest.raises(NotFoundError):
        await client.threads.get(thread_id)


# ---------------------------------------------------------------- TTL


async def test_ttl_is_stored_and_reported_with_include(client) -> None:
    before = datetime.now(UTC)
    thread = await client.threads.create(ttl=30)
    assert "ttl" not in thread
    with_ttl = await client.threads.get(thread["thread_id"], include=["ttl"])
    assert with_ttl["ttl"]["strategy"] == "delete" and with_ttl["ttl"]["ttl_minutes"] == 30
    expires = parse_time(with_ttl["ttl"]["expires_at"])
    assert before + timedelta(minutes=29) < expires < before + timedelta(minutes=31)
    assert "ttl" not in await client.threads.get(thread["thread_id"])

    await client.threads.update(thread["thread_id"], metadata={}, ttl={"ttl": 120, "strategy": "keep_latest"})
    updated = (await client.threads.get(thread["thread_id"], include=["ttl"]))["ttl"]
    assert updated["strategy"] == "keep_latest" and updated["ttl_minutes"] == 120
    assert parse_time(updated["expires_at"]) > before + timedelta(minutes=119)


async def test_thread_without_ttl_reports_none(client) -> None:
    thread = await client.threads.create()
    assert "ttl" not in await client.threads.get(thread["thread_id"], include=["ttl"])


# ---------------------------------------------------------------- update, delete


async def test_update_merges_metadata(client) -> None:
    thread = await client.threads.create(metadata={"a": 1, "b": 1})
    updated = await client.threads.update(thread["thread_id"], metadata={"b": 2, "c": 3})
    assert updated["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert parse_time(updated["updated_at"]) >= parse_time(thread["updated_at"])
    assert await client.threads.update(thread["thread_id"], metadata={"d": 4}, return_minimal=True) is None
    assert (await client.threads.get(thread["thread_id"]))["metadata"] == {"a": 1, "b": 2, "c": 3, "d": 4}


async def test_update_missing_thread_is_404(client) -> None:
    with pytest.raises(NotFoundError):
        await client.threads.update(str(uuid.uuid4()), metadata={"a": 1})


async def test_delete_removes_thread_and_its_checkpoints(client) -> None:
    thread_id = str(uuid.uuid4())
    await client.threads.create(
        thread_id=thread_id, graph_id="echo", supersteps=steps(({"items": ["x"]}, "echo"))
    )
    assert await client.threads.delete(thread_id) is None
    with pytest.raises(NotFoundError):
        await client.threads.get(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.delete(thread_id)
    # Same id again: no checkpoint of the deleted thread survives.
    await client.threads.create(thread_id=thread_id, graph_id="echo")
    state = await client.threads.get_state(thread_id)
    assert state["checkpoint"] is None and state["values"] == {}


# ---------------------------------------------------------------- copy, prune


async def test_copy_carries_metadata_and_checkpoints(client) -> None:
    meta = tag()
    source = await client.threads.create(
        metadata=meta,
        graph_id="chain10",
        supersteps=steps(({"items": ["a"]}, "n0"), ({"items": ["b"]}, "n1")),
    )
    copy = await client.threads.copy(source["thread_id"])
    assert copy["thread_id"] != source["thread_id"]
    assert copy["metadata"] == source["metadata"] and copy["values"] == {"items": ["a", "b"]}
    state = await client.threads.get_state(copy["thread_id"])
    assert state["values"] == {"items": ["a", "b"]} and state["next"] == ["n2"]
    assert state["checkpoint"]["thread_id"] == copy["thread_id"]
    history = await client.threads.get_history(copy["thread_id"], limit=10)
    assert len(history) == 2
    # The copy lives on independently of the source.
    await client.threads.update_state(copy["thread_id"], {"items": ["c"]}, as_node="n2")
    assert (await client.threads.get_state(source["thread_id"]))["values"] == {"items": ["a", "b"]}


async def test_copy_of_missing_thread_is_409(client) -> None:
    with pytest.raises(ConflictError):
        await client.threads.copy(str(uuid.uuid4()))


async def test_prune_delete_removes_threads(client) -> None:
    keep = await client.threads.create()
    drop = [
        await client.threads.create(graph_id="echo", supersteps=steps(({"items": ["x"]}, "echo")))
        for _ in range(2)
    ]
    ids = [t["thread_id"] for t in drop]
    assert await client.threads.prune([*ids, str(uuid.uuid4())]) == {"pruned_count": 2}
    for thread_id in ids:
        with pytest.raises(NotFoundError):
            await client.threads.get(thread_id)
    assert (await client.threads.get(keep["thread_id"]))["thread_id"] == keep["thread_id"]


async def test_prune_keep_latest_keeps_only_the_latest_checkpoint(client) -> None:
    thread = await client.threads.create(
        graph_id="chain10",
        supersteps=steps(({"items": ["a"]}, "n0"), ({"items": ["b"]}, "n1"), ({"items": ["c"]}, "n2")),
    )
    thread_id = thread["thread_id"]
    assert len(await client.threads.get_history(thread_id, limit=10)) == 3
    assert await client.threads.prune([thread_id], strategy="keep_latest") == {"pruned_count": 1}
    history = await client.threads.get_history(thread_id, limit=10)
    assert len(history) == 1 and history[0]["values"] == {"items": ["a", "b", "c"]}
    assert (await client.threads.get(thread_id))["values"] == {"items": ["a", "b", "c"]}


# ---------------------------------------------------------------- search, count


async def _three_threads(client, meta: dict) -> list[dict]:
    """idle (echo), interrupted (approval waiting at act), and one without state."""
    done = await client.threads.create(
        metadata={**meta, "kind": "done"},
        graph_id="echo",
        supersteps=steps(({"items": ["hi", "there"]}, "echo")),
    )
    waiting = await client.threads.create(
        metadata={**meta, "kind": "waiting", "nested": {"x": 1, "y": 2}},
        graph_id="approval",
        supersteps=steps(({"request": meta["suite"], "approved": True}, "ask")),
    )
    empty = await client.threads.create(metadata={**meta, "kind": "empty"})
    return [done, waiting, empty]


async def test_search_filters_by_metadata_values_and_status(client) -> None:
    meta = tag()
    done, waiting, empty = await _three_threads(client, meta)
    assert waiting["status"] == "interrupted" and done["status"] == "idle"
    found = await client.threads.search(metadata=meta, limit=10)
    assert [t["thread_id"] for t in found] == [empty["thread_id"], waiting["thread_id"], done["thread_id"]]
    by_nested = await client.threads.search(metadata={**meta, "nested": {"x": 1}})
    assert [t["thread_id"] for t in by_nested] == [waiting["thread_id"]]
    by_values = await client.threads.search(values={"request": meta["suite"]})
    assert [t["thread_id"] for t in by_values] == [waiting["thread_id"]]
    by_status = await client.threads.search(metadata=meta, status="interrupted")
    assert [t["thread_id"] for t in by_status] == [waiting["thread_id"]]
    by_ids = await client.threads.search(ids=[done["thread_id"], empty["thread_id"]])
    assert {t["thread_id"] for t in by_ids} == {done["thread_id"], empty["thread_id"]}
    assert await client.threads.count(metadata=meta) == 3
    assert await client.threads.count(metadata=meta, status="idle") == 2
    assert await client.threads.count(values={"request": meta["suite"]}) == 1


async def test_search_default_order_is_most_recently_updated_first(client) -> None:
    meta = tag()
    first = await client.threads.create(metadata=meta)
    second = await client.threads.create(metadata=meta)
    assert [t["thread_id"] for t in await client.threads.search(metadata=meta)] == [
        second["thread_id"],
        first["thread_id"],
    ]
    await client.threads.update(first["thread_id"], metadata={"touched": True})
    assert (await client.threads.search(metadata=meta))[0]["thread_id"] == first["thread_id"]
    ascending = await client.threads.search(metadata=meta, sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in ascending] == [first["thread_id"], second["thread_id"]]
    by_id = await client.threads.search(metadata=meta, sort_by="thread_id", sort_order="desc")
    assert [t["thread_id"] for t in by_id] == sorted([first["thread_id"], second["thread_id"]], reverse=True)


async def test_search_select_and_extract(client) -> None:
    meta = tag()
    done, waiting, _ = await _three_threads(client, meta)
    selected = await client.threads.search(metadata={**meta, "kind": "done"}, select=["thread_id", "status"])
    assert selected == [{"thread_id": done["thread_id"], "status": "idle"}]
    extracted = await client.threads.search(
        metadata=meta,
        select=["thread_id"],
        extract={
            "last": "values.items[-1]",
            "first": "values.items[0]",
            "kind": "metadata.kind",
            "x": "metadata.nested.x",
        },
    )
    by_id = {t["thread_id"]: t["extracted"] for t in extracted}
    assert by_id[done["thread_id"]] == {"last": "there", "first": "hi", "kind": "done", "x": None}
    assert by_id[waiting["thread_id"]] == {"last": None, "first": None, "kind": "waiting", "x": 1}


def test_search_pagination_headers(server: LiveServer) -> None:
    meta = tag()
    for _ in range(3):
        httpx.post(f"{server.url}/threads", json={"metadata": meta}).raise_for_status()
    page = httpx.post(f"{server.url}/threads/search", json={"metadata": meta, "limit": 2})
    assert len(page.json()) == 2
    assert page.headers["X-Pagination-Total"] == "3" and page.headers["X-Pagination-Next"] == "2"
    last = httpx.post(f"{server.url}/threads/search", json={"metadata": meta, "limit": 2, "offset": 2})
    assert len(last.json()) == 1 and "X-Pagination-Next" not in last.headers
    assert httpx.post(f"{server.url}/threads/count", json={"metadata": meta}).json() == 3


# ---------------------------------------------------------------- wire details


def test_unknown_body_fields_are_ignored(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/threads", json={"metadata": {"a": 1}, "langsmith_tracer": {"x": 1}})
    assert response.status_code == 200 and response.json()["metadata"] == {"a": 1}
    search = httpx.post(f"{server.url}/threads/search", json={"metadata": {"a": 1}, "strict_resume": True})
    assert search.status_code == 200


def test_delete_and_minimal_patch_answer_204_empty(server: LiveServer) -> None:
    thread_id = httpx.post(f"{server.url}/threads", json={}).json()["thread_id"]
    patch = httpx.patch(
        f"{server.url}/threads/{thread_id}", json={"metadata": {"a": 1}}, headers={"Prefer": "return=minimal"}
    )
    assert patch.status_code == 204 and patch.content == b""
    delete = httpx.delete(f"{server.url}/threads/{thread_id}")
    assert delete.status_code == 204 and delete.content == b""
    assert httpx.head(f"{server.url}/threads/{thread_id}").status_code == 404


MISSING = "00000000-0000-4000-8000-000000000000"

BAD_INPUTS = [
    ("post", "/threads", {"thread_id": "nope"}, 422, "Invalid thread ID: must be a UUID"),
    ("post", "/threads", {"metadata": "x"}, 422, "metadata"),
    ("post", "/threads", {"if_exists": "maybe"}, 422, "if_exists"),
    ("post", "/threads", {"ttl": -5}, 422, "ttl"),
    ("post", "/threads", {"ttl": {"ttl": 5, "strategy": "bogus"}}, 422, "strategy"),
    ("post", "/threads", {"ttl": "soon"}, 422, "ttl"),
    # Past datetime's range (was a 500: OverflowError computing the expiry).
    ("post", "/threads", {"ttl": 1e16}, 422, "ttl must be at most"),
    ("post", "/threads", {"ttl": {"ttl": 1.7e308, "strategy": "delete"}}, 422, "ttl must be at most"),
    # Postgres stores no NUL characters (was a 500 from the insert or the jsonb filter).
    ("post", "/threads", {"metadata": {"a": "x\u0000"}}, 422, "metadata: Null characters are not allowed."),
    ("post", "/threads", {"metadata": {"\u0000": 1}}, 422, "metadata: Null characters"),
    (
        "post",
        "/threads",
        {"metadata": {"graph_id": "echo"}, "supersteps": steps(({"items": ["\u0000"]}, "echo"))},
        422,
        "supersteps: Null characters",
    ),
    ("post", "/threads/search", {"metadata": {"a": "\u0000"}}, 422, "metadata: Null characters"),
    ("post", "/threads/search", {"values": {"a": ["\u0000"]}}, 422, "values: Null characters"),
    ("post", "/threads/count", {"metadata": {"\u0000K": 1}}, 422, "metadata: Null characters"),
    ("post", "/threads/search", {"offset": 2**63}, 422, "offset"),
    ("post", "/threads", [1, 2], 422, "dictionary"),
    ("post", "/threads", {"supersteps": [{"updates": []}], "metadata": {"graph_id": "echo"}}, 422, "updates"),
    (
        "post",
        "/threads",
        {"supersteps": [{"updates": [{"values": {}}]}], "metadata": {"graph_id": "echo"}},
        422,
        "as_node",
    ),
    (
        "post",
        "/threads",
        {"supersteps": [{"updates": [{"values": {}, "as_node": "echo"}]}]},
        400,
        "no assigned graph ID",
    ),
    (
        "post",
        "/threads",
        {"supersteps": [{"updates": [{"values": 5, "as_node": "echo"}]}], "metadata": {"graph_id": "echo"}},
        400,
        "",
    ),
    ("post", "/threads/search", {"select": ["bogus"]}, 422, "select"),
    ("post", "/threads/search", {"sort_by": "bogus"}, 422, "sort_by"),
    ("post", "/threads/search", {"sort_order": "sideways"}, 422, "sort_order"),
    ("post", "/threads/search", {"status": "weird"}, 422, "status"),
    ("post", "/threads/search", {"limit": "many"}, 422, "limit"),
    ("post", "/threads/search", {"limit": 0}, 422, "limit"),
    ("post", "/threads/search", {"offset": -1}, 422, "offset"),
    ("post", "/threads/search", {"ids": ["nope"]}, 422, "Invalid thread ID"),
    ("post", "/threads/search", {"metadata": [1]}, 422, "metadata"),
    ("post", "/threads/search", {"values": "x"}, 422, "values"),
    ("post", "/threads/search", {"extract": {"a": "state.items"}}, 422, "extract"),
    ("post", "/threads/search", {"extract": {"a": "values..items"}}, 422, "extract"),
    ("post", "/threads/search", {"extract": {"a": "values.items[x]"}}, 422, "extract"),
    ("post", "/threads/search", {"extract": {f"k{i}": "values.a" for i in range(11)}}, 422, "extract"),
    ("post", "/threads/search", {"extract": ["values.a"]}, 422, "extract"),
    ("post", "/threads/count", {"status": "weird"}, 422, "status"),
    ("post", "/threads/prune", {}, 422, "thread_ids"),
    ("post", "/threads/prune", {"thread_ids": "x"}, 422, "thread_ids"),
    ("post", "/threads/prune", {"thread_ids": [MISSING], "strategy": "bogus"}, 422, "strategy"),
    ("post", "/threads/prune", {"thread_ids": ["nope"]}, 422, "Invalid thread ID"),
    ("get", "/threads/nope", None, 422, "Invalid thread ID: must be a UUID"),
    ("get", f"/threads/{MISSING}", None, 404, f"Thread with ID {MISSING} not found"),
    ("patch", f"/threads/{MISSING}", {"metadata": {}}, 404, "not found"),
    ("patch", "/threads/nope", {"metadata": {}}, 422, "Invalid thread ID"),
    ("patch", f"/threads/{MISSING}", {"metadata": {"a": "\u0000"}}, 422, "metadata: Null characters"),
    ("patch", f"/threads/{MISSING}", {"ttl": 2.3e16}, 422, "ttl must be at most"),
    ("delete", "/threads/nope", None, 422, "Invalid thread ID"),
    ("delete", f"/threads/{MISSING}", None, 404, "not found"),
    ("post", f"/threads/{MISSING}/copy", None, 409, "not found"),
    ("post", "/threads/nope/copy", None, 422, "Invalid thread ID"),
]


@pytest.mark.parametrize(("method", "path", "body", "code", "detail"), BAD_INPUTS)
def test_bad_thread_input_is_a_4xx_with_detail(
    server: LiveServer, method: str, path: str, body: object, code: int, detail: str
) -> None:
    response = httpx.request(method.upper(), f"{server.url}{path}", json=body)
    assert response.status_code == code, response.text
    assert detail in response.json()["detail"]


def test_rejected_patch_leaves_the_thread_as_it_was(server: LiveServer) -> None:
    created = httpx.post(f"{server.url}/threads", json={"metadata": {"keep": 1}, "ttl": 5}).json()
    url = f"{server.url}/threads/{created['thread_id']}"
    for body in ({"metadata": {"keep": "\u0000"}}, {"ttl": 1e16}, {"metadata": {"keep": 2}, "ttl": 1e16}):
        assert httpx.patch(url, json=body).status_code == 422
    after = httpx.get(url, params={"include": "ttl"}).json()
    assert after["metadata"] == {"keep": 1}
    assert after["ttl"]["ttl_minutes"] == 5


def test_each_answer_is_about_its_own_body(server: LiveServer) -> None:
    """Request threads and their serializers are reused: nothing of one body's validation
    (errors, values) shows in the answer to the next."""
    for attempt in range(3):
        bad = httpx.post(f"{server.url}/threads", json={"ttl": 1e16})
        assert bad.status_code == 422, bad.text
        assert "ttl" in bad.json()["detail"] and "metadata" not in bad.json()["detail"]
        other_bad = httpx.post(f"{server.url}/threads", json={"metadata": "not a dict"})
        assert other_bad.status_code == 422, other_bad.text
        assert "ttl" not in other_bad.json()["detail"]
        good = httpx.post(f"{server.url}/threads", json={"metadata": {"attempt": attempt}})
        assert good.status_code == 200, good.text
        assert good.json()["metadata"] == {"attempt": attempt}
        plain = httpx.post(f"{server.url}/threads", json={})
        assert plain.status_code == 200, plain.text
        assert plain.json()["metadata"] == {}


def test_numbers_beyond_64_bits_read_back(server: LiveServer) -> None:
    """Postgres jsonb hands 1e30 back as the integer 10**30: reads were a 500 once it was stored."""
    meta = {**tag(), "big": 1e30, "small": -1e25}
    created = httpx.post(f"{server.url}/threads", json={"metadata": meta})
    assert created.status_code == 200, created.text
    fetched = httpx.get(f"{server.url}/threads/{created.json()['thread_id']}")
    assert fetched.status_code == 200, fetched.text
    assert float(fetched.json()["metadata"]["big"]) == 1e30
    assert float(fetched.json()["metadata"]["small"]) == -1e25
    found = httpx.post(f"{server.url}/threads/search", json={"metadata": {"suite": meta["suite"]}})
    assert found.status_code == 200, found.text
    assert [float(t["metadata"]["big"]) for t in found.json()] == [1e30]


def test_invalid_json_body_is_422(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/threads", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {"detail": "Invalid JSON in request body"}


# ---------------------------------------------------------------- sync client smoke


def test_sync_client_smoke(sync_client) -> None:
    meta = tag()
    thread = sync_client.threads.create(metadata=meta, graph_id="echo")
    thread_id = thread["thread_id"]
    assert sync_client.threads.get(thread_id)["metadata"]["graph_id"] == "echo"
    assert sync_client.threads.update(thread_id, metadata={"x": 1})["metadata"]["x"] == 1
    assert [t["thread_id"] for t in sync_client.threads.search(metadata=meta)] == [thread_id]
    assert sync_client.threads.count(metadata=meta) == 1
    assert sync_client.threads.get_state(thread_id)["checkpoint"] is None
    result = sync_client.threads.update_state(thread_id, {"items": ["s"]}, as_node="echo")
    assert result["checkpoint"]["thread_id"] == thread_id
    assert sync_client.threads.get_state(thread_id)["values"] == {"items": ["s"]}
    assert len(sync_client.threads.get_history(thread_id)) == 1
    copy = sync_client.threads.copy(thread_id)
    assert sync_client.threads.get_state(copy["thread_id"])["values"] == {"items": ["s"]}
    assert sync_client.threads.prune([copy["thread_id"]]) == {"pruned_count": 1}
    sync_client.threads.delete(thread_id)
    assert sync_client.threads.count(metadata=meta) == 0
