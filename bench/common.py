"""What the stand-alone benchmarks (``bench_scale.py``, ``bench_memory.py``) share."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any


def tagged_log(tag: str) -> Callable[[str], None]:
    """A logger writing ``[tag HH:MM:SS] message`` lines to stderr."""

    def log(msg: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


class Errors:
    """Errors counted by label (a phase, a kind of run), the first few kept as samples."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: list[str] = []

    def add(self, label: str, what: str) -> None:
        self.counts[label] += 1
        if len(self.samples) < 12:
            self.samples.append(f"{label}: {what[:300]}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def on_prod_server(
    main_async: Callable[[Any, Any], Awaitable[int]], args: Any, log: Callable[[str], None]
) -> int:
    """Start the production setup as ``run.py`` does, run ``main_async(args, server)`` against
    it and stop it whatever happens (web and worker killed, database dropped)."""
    from run import WORKER_CONCURRENCY, make_server

    server = make_server("prod")
    t0 = time.monotonic()
    try:
        server.start()
        log(f"prod server up at {server.url} (db {server.db_name}, worker -P threads -c {WORKER_CONCURRENCY}) "
            f"in {time.monotonic() - t0:.1f}s")
        rc = asyncio.run(main_async(args, server))
        log(f"done in {time.monotonic() - t0:.0f}s")
        return rc
    except Exception as e:  # noqa: BLE001
        log(f"FAILED: {e!r}")
        print(server.logs()[-3000:], file=sys.stderr)
        return 1
    finally:
        server.stop()
