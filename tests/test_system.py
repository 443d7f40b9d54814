"""System endpoints and the wire conventions every route shares."""

from __future__ import annotations

import httpx

from tests.live import LiveServer


def test_ok_and_info_answer(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/ok").json() == {"ok": True}
    assert httpx.get(f"{server.url}/ok?check_db=1").json() == {"ok": True}
    info = httpx.get(f"{server.url}/info").json()
    assert info["flags"]["assistants"] is True
    assert "langgraph_py_version" in info


def test_unknown_route_is_json_404(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_cors_preflight_allows_studio(server: LiveServer) -> None:
    response = httpx.options(
        f"{server.url}/threads/search",
        headers={
            "Origin": "https://smith.langchain.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in {"*", "https://smith.langchain.com"}
    simple = httpx.get(f"{server.url}/info", headers={"Origin": "https://smith.langchain.com"})
    assert "x-pagination-total" in simple.headers["access-control-expose-headers"].lower()


def test_openapi_schema_is_served(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    assert "paths" in response.json() or "openapi" in response.text


def test_head_is_served_for_get_routes_and_docs_render(server: LiveServer) -> None:
    assert httpx.head(f"{server.url}/ok").status_code == 200
    assert httpx.head(f"{server.url}/assistants/echo").status_code == 200
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_plain_responses_carry_their_length(server: LiveServer) -> None:
    """A JSON answer is sent with Content-Length, not chunked framing: one write fewer for the
    server, and a client reads it without parsing chunks."""
    created = httpx.post(f"{server.url}/threads", json={})
    fetched = httpx.get(f"{server.url}/threads/{created.json()['thread_id']}")
    missing = httpx.get(f"{server.url}/no/such/route")
    head = httpx.head(f"{server.url}/ok")
    for response in (created, fetched, missing):
        assert "transfer-encoding" not in response.headers
        assert int(response.headers["content-length"]) == len(response.content) > 0
    assert int(head.headers["content-length"]) == len(httpx.get(f"{server.url}/ok").content)
    assert head.content == b""
