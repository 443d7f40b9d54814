"""The operator console: the Django admin over a live server, as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.live import ROOT, LiveServer


def make_superuser(server: LiveServer) -> None:
    env = server.env()
    env.update(DJANGO_SUPERUSER_PASSWORD="operator-pass")
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "operator", "--email", "o@x.io"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )


def login(url: str) -> httpx.Client:
    http = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
    page = http.get("/admin/login/")
    token = http.cookies["csrftoken"]
    response = http.post(
        "/admin/login/?next=/admin/",
        data={"username": "operator", "password": "operator-pass", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/admin/login/"},
    )
    assert response.status_code == 200 and "Log out" in response.text, page.text[:200]
    return http


async def test_operator_sees_and_cancels_runs(prod_server: LiveServer) -> None:
    from langgraph_sdk import get_client

    make_superuser(prod_server)
    async with get_client(url=prod_server.url, api_key=None) as client:
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], "slow", input={"items": ["sleep:2"]})
        http = login(prod_server.url)
        listing = http.get("/admin/runs/run/")
        assert run["run_id"] in listing.text
        assert "Assistants" in http.get("/admin/").text
        assert http.get("/static/admin/css/base.css").status_code == 200
        detail = http.get(f"/admin/threads/thread/{thread['thread_id']}/change/")
        assert detail.status_code == 200
        token = http.cookies["csrftoken"]
        http.post(
            "/admin/runs/run/",
            data={"action": "cancel_runs", "_selected_action": [run["run_id"]], "csrfmiddlewaretoken": token},
            headers={"Referer": f"{prod_server.url}/admin/runs/run/"},
        )
        await client.runs.join(thread["thread_id"], run["run_id"])
        assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "interrupted"
    assert os.environ.get("DJANGO_SUPERUSER_PASSWORD") is None
