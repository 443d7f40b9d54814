"""``python manage.py dev``: the whole server in one process on the embedded default.

Migrates the database, imports the configured graphs (stopping with a clear message if
one fails), and serves the API with uvicorn. Runs execute on an in-process thread pool
and stream through an in-process event bus, so no other service is needed; set
``DATABASE_URL`` to use Postgres instead of the SQLite file. The process keeps to one CPU
unless told ``--all-cpus`` (see ``pin_to_one_cpu``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import uvicorn
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agentserver.conf import server_settings
from runs.sweeper import sweep_runs

logger = logging.getLogger(__name__)


def pin_to_one_cpu() -> int | None:
    """Keep every thread of this process on the CPU it runs on now; returns that CPU, or
    None where there is nothing to pin (one CPU allowed, or no affinity: macOS, Windows).

    Why: this process is a dozen threads (the event loop, request threads, run threads,
    the checkpoint writer) that hand work to each other many times per run and take turns
    at the GIL, so only one of them runs Python at a time anyway. Spread over CPUs, each
    hand-over wakes a thread on another CPU (an inter-processor interrupt, and a cold
    cache): on the 2-CPU bench machine that was ~20 % of the process's CPU per run
    (``bench/README.md``, "dev on one CPU"). What one CPU costs: native code that runs
    beside the GIL (numpy, a tokenizer) in two nodes at once no longer runs in parallel,
    and subprocesses a graph starts inherit the one CPU; ``--all-cpus`` keeps them all.

    On that CPU the threads also stop preempting each other on wake-up (``batch_scheduling``).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None
    try:
        cpu = current_cpu()
        if cpu not in allowed:
            cpu = min(allowed)
        # Threads started later inherit the mask of the thread that starts them.
        for task in os.listdir("/proc/self/task"):
            with suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task), {cpu})
                batch_scheduling(int(task))
    except OSError as exc:  # a sandbox that forbids it: serve anyway, on every CPU
        logger.warning("Could not keep to one CPU (%s); running on every CPU", exc)
        return None
    return cpu


def batch_scheduling(task: int) -> None:
    """Linux's ``SCHED_BATCH`` for ``task`` (threads it starts inherit it): a thread woken on
    the one CPU waits for the running one to block instead of preempting it.

    Why: a woken thread here mostly needs the GIL, which the running thread holds; preempting
    that thread only to find the GIL taken costs two context switches for nothing. Batch
    threads keep their fair share of the CPU; only wake-up preemption goes. Measured with
    ``bench/ab.py --mode dev``: context switches per run about 26 -> 13, CPU per run -3.0 % (side
    by side, 5 rounds) and -9.1 % (one at a time, 10 rounds). Where the policy is missing or
    refused, the threads keep the default one."""
    if hasattr(os, "SCHED_BATCH"):
        with suppress(OSError):  # refused (a sandbox), or the thread ended meanwhile
            os.sched_setscheduler(task, os.SCHED_BATCH, os.sched_param(0))


# How long a thread keeps the GIL while another waits for it, on the one CPU: twice Python's
# 5 ms. There the threads mostly hand the GIL over as they block (see ``batch_scheduling``);
# each forced hand-over costs two context switches. ``bench/ab.py --mode dev`` side by side
# (4-5 rounds): CPU per run -2.4 % (10 ms), -3.5 % (20 ms), -2.0 % (100 ms); 10 ms keeps a
# CPU-bound node from holding up the event loop for long.
ONE_CPU_SWITCH_INTERVAL = 0.01


def current_cpu() -> int:
    """The CPU this thread last ran on (field 39 of ``/proc/self/stat``): where the
    scheduler found room, rather than always CPU 0."""
    stat = Path("/proc/self/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[36])


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
        parser.add_argument(
            "--all-cpus", action="store_true",
            help="run on every CPU the process may use (default: keep to one; see pin_to_one_cpu)",
        )

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
        cpu = None if options["all_cpus"] else pin_to_one_cpu()
        if cpu is not None:
            sys.setswitchinterval(ONE_CPU_SWITCH_INTERVAL)
        start_sweeper(server_settings.SWEEP_INTERVAL_SECONDS)
        where = "every CPU" if cpu is None else f"CPU {cpu} (--all-cpus for every CPU)"
        self.stdout.write(
            f"agentserver: serving {server_settings.CONFIG} on http://{options['host']}:{options['port']}, on {where}"
        )
        uvicorn.run(
            "agentserver.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="off",
            log_level=options["log_level"],
        )
