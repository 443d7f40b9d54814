"""Config loading and the graph registry, as an operator meets them: at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.live import POSTGRES_ADMIN_URL, ROOT


def run_manage(*args: str, config: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSERVER_", "DJANGO_"))}
    environment.update(DJANGO_SETTINGS_MODULE="agentserver.settings", DATABASE_URL="sqlite:///:memory:")
    environment.update(env)
    if config is not None:
        environment["AGENTSERVER_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def write_config(tmp_path: Path, graphs: dict, **extra: object) -> Path:
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": graphs, **extra}))
    return path


def test_graph_that_fails_to_import_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nonexistent_package_xyz\ngraph = None\n")
    config = write_config(tmp_path, {"broken": "./broken.py:graph"})
    result = run_manage("dev", "--port", "0", config=config)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "broken" in message and "broken.py" in message and "ModuleNotFoundError" in message
    assert "Traceback" not in result.stderr


def test_missing_attribute_and_non_graph_are_reported(tmp_path: Path) -> None:
    (tmp_path / "odd.py").write_text("graph = 42\n")
    for spec, expected in (("./odd.py:nothing", "no attribute 'nothing'"), ("./odd.py:graph", "not a graph")):
        result = run_manage("dev", "--port", "0", config=write_config(tmp_path, {"odd": spec}))
        assert result.returncode != 0 and expected in result.stderr, result.stderr


def test_system_checks_name_misconfiguration(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"echo": str(ROOT / "tests/graphs/graphs.py") + ":echo"})
    result = run_manage("check", config=config, AGENTSERVER_DISPATCHER="carrier-pigeon")
    assert result.returncode != 0
    assert "agentserver.E001" in result.stderr
    result = run_manage("check", config=config, AGENTSERVER_EVENT_BUS="redis")
    assert "agentserver.E003" in result.stderr
    result = run_manage("check", config=tmp_path / "missing.json")
    assert "agentserver.E006" in result.stderr
    assert run_manage("check", config=config).returncode == 0


def test_bad_knob_values_fail_loudly(tmp_path: Path) -> None:
    result = run_manage("check", AGENTSERVER_LEASE_SECONDS="soon")
    assert result.returncode != 0
    assert "AGENTSERVER_LEASE_SECONDS must be a float" in result.stderr


async def test_every_kind_of_graph_entry_runs(client) -> None:
    """Compiled, uncompiled, factory with config, async context manager, module path; env applied."""
    assert (await client.runs.wait(None, "managed", input={"items": ["m"]}))["items"] == ["m", "echo:m"]
    assert (await client.runs.wait(None, "by_module", input={"items": []}))["items"][-1] == "n9"
    assert (await client.runs.wait(None, "env", input={"items": []}))["items"] == ["from-config"]
    graphs = {a["graph_id"] for a in await client.assistants.search(limit=100)}
    assert {"managed", "by_module", "env", "configurable"} <= graphs


def test_prepared_statements_can_be_turned_off_for_a_pooler() -> None:
    """Behind PgBouncer in transaction mode an operator sets DATABASE_PREPARED_STATEMENTS=false:
    parameters are then bound on the client and nothing is prepared on the server."""
    probe = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    for _ in range(8): cursor.execute('SELECT %s::int', [1])\n"
        "    print(type(cursor.cursor).__name__, connection.connection.prepare_threshold)\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements'); print(cursor.fetchone()[0])\n"
    )
    url = POSTGRES_ADMIN_URL
    default = run_manage("shell", "-v", "0", "-c", probe, DATABASE_URL=url)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["ServerBindingCursor", "5", "1"]
    off = run_manage("shell", "-v", "0", "-c", probe, DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="false")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["Cursor", "None", "0"]
