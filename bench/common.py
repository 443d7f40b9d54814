"""What the stand-alone benchmarks (``bench_scale.py``, ``bench_memory.py``) share."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable


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
