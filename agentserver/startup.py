"""What every serving process does before taking traffic."""

from __future__ import annotations

import gc
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
    freeze_startup_objects()


def freeze_startup_objects() -> None:
    """Keep what the process loaded at start out of the cyclic garbage collector.

    Django, LangGraph and the graphs leave hundreds of thousands of objects that live as
    long as the process; every full collection would walk them all again, and a request
    allocates enough to trigger collections often (the web process spent ~5 % of its CPU
    in the collector). Frozen, they are never scanned; a larger first generation makes
    collections rarer, and garbage cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


# Python's default is 700 allocations; one request allocates several thousand objects.
GC_FIRST_GENERATION_THRESHOLD = 10_000
