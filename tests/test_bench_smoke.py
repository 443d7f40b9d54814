"""The benchmark still runs: `bench/run.py --quick` against the production setup only.

No timing is asserted: benchmarks print figures, CI only checks that they are produced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_bench_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "prod", "--rounds", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    for figure in ("`runs.wait` p50", "throughput, 8 clients", "background runs", "interrupt",
                   "chain10 streamed", "server CPU per run"):
        assert figure in proc.stdout
    report = out.read_text()
    assert "| ours (prod) |" in report and "## Machine" in report and "## Versions" in report
