"""``python manage.py dev``: the whole server in one process on the embedded default.

Migrates the database, imports the configured graphs (stopping with a clear message if
one fails), and serves the API with uvicorn. Runs execute on an in-process thread pool
and stream through an in-process event bus, so no other service is needed; set
``DATABASE_URL`` to use Postgres instead of the SQLite file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agentserver.conf import server_settings
from runs.sweeper import sweep_runs

logger = logging.getLogger(__name__)


def start_sweeper(interval: float) -> None:
    """Beat's job in one process: recover runs whose attempt died (e.g. the last `dev` crashed)."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                sweep_runs()
            except Exception:
                logger.exception("Recovery sweep failed")
            finally:
                connections.close_all()

    threading.Thread(target=loop, name="agentserver-sweeper", daemon=True).start()


class Command(BaseCommand):
    help = "Run agentserver in one process: migrate, load the graphs, serve the API."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", help="langgraph.json to serve (default: examples/langgraph.json)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2024)
        parser.add_argument("--log-level", default="info")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["config"]:
            config_path = Path(options["config"]).resolve()
            if not config_path.exists():
                raise CommandError(f"Config file not found: {config_path}")
            os.environ["AGENTSERVER_CONFIG"] = str(config_path)
        # One process: runs on the in-process pool, events on the in-process bus.
        os.environ["AGENTSERVER_DISPATCHER"] = "inprocess"
        os.environ["AGENTSERVER_EVENT_BUS"] = "memory"
        server_settings.reload()

        call_command("migrate", interactive=False, verbosity=0)
        call_command("check")
        start_sweeper(server_settings.SWEEP_INTERVAL_SECONDS)
        self.stdout.write(
            f"agentserver: serving {server_settings.CONFIG} on http://{options['host']}:{options['port']}"
        )
        uvicorn.run(
            "agentserver.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="off",
            log_level=options["log_level"],
        )
