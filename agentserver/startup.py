"""What every serving process does before taking traffic."""

from __future__ import annotations

import threading

from django.db import connections

from agentserver.config import ConfigError
from agentserver.graphs import GraphLoadError, get_registry
from runs.assistants import ensure_system_assistants


def prepare_process() -> None:
    """Import the configured graphs and make sure each has its default assistant.

    A graph that fails to import stops the process with one line naming the graph, the
    file and the exception. The database work runs on its own thread because ASGI
    servers import the application inside their event loop.
    """
    try:
        get_registry()
    except (ConfigError, GraphLoadError) as exc:
        raise SystemExit(f"agentserver: {exc}") from None
    errors: list[BaseException] = []

    def work() -> None:
        try:
            ensure_system_assistants()
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name="agentserver-startup")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
