"""The benchmarks still run: each on a tiny workload, against the real services.

No timing is asserted: benchmarks print figures, CI only checks that they are produced and
that every run they made succeeded (each script exits non-zero on a failed run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.timeout(180)
def test_bench_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    stdout = run_bench("bench/run.py", "--quick", "--only", "prod", "--rounds", "1", "--out", str(out), timeout=280)
    for figure in ("`runs.wait` p50", "throughput, 8 clients", "background runs", "interrupt",
                   "chain10 streamed", "server CPU per run"):
        assert figure in stdout
    report = out.read_text()
    assert "| ours (prod) |" in report and "## Machine" in report and "## Versions" in report


@pytest.mark.timeout(120)
def test_checkpointer_bench_compares_both_savers_sync_and_async() -> None:
    stdout = run_bench("bench/bench_checkpointer.py", "--quick", timeout=110)
    for api in ("sync", "async"):
        assert f"| {api}: DjangoCheckpointSaver |" in stdout
        assert f"| {api}: langgraph-checkpoint-postgres |" in stdout
        assert f"| {api}: ratio ours ÷ theirs (mean) |" in stdout


@pytest.mark.timeout(180)
def test_scale_bench_reports_reads_admission_and_background_runs() -> None:
    stdout = run_bench("bench/bench_scale.py", "--quick", timeout=170)
    for figure in ("`threads.get_state`", "`threads.get_history(limit=10)`", "`threads.search(limit=10)`",
                   "run admission: `runs.create` on an idle thread"):
        assert f"| {figure} |" in stdout
    assert "background runs (runs.create 16 in flight" in stdout
    assert "errors: 0" in stdout


@pytest.mark.timeout(180)
def test_memory_bench_prints_the_rss_series() -> None:
    # 300 runs are too few to call a leak (the benchmark's default is 10,000): the threshold is
    # lifted so that only a failed run or a missing series fails this smoke run.
    stdout = run_bench(
        "bench/bench_memory.py", "--runs", "300", "--every", "100", "--warmup", "50", "--threshold-mib", "1000",
        timeout=170,
    )
    assert "| runs | web RSS MiB | worker0 RSS MiB |" in stdout
    assert "| 300 |" in stdout
    assert "errors: 0" in stdout


def test_report_pairs_each_round_with_the_official_server_of_the_same_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ratios are taken within each round, then their median: a change of machine speed between
    rounds moves both servers alike and cancels out."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # and run.py's own additions go again after
    from run import round_ratios

    def result(label: str, cpu: float) -> dict:
        return {"label": label, "results": {"tp": {"c8": {"cpu_ms_per_run": {"server": cpu}}}}}

    by_server = {
        "dev": [result("dev#1", 10.0), result("dev#2", 2.0), {"label": "dev#3", "fatal": "did not start"}],
        "official": [result("official#1", 24.0), result("official#2", 2.2), result("official#3", 1.0)],
        "official-j10": [result("official-j10#1", 20.0), result("official-j10#2", 2.0)],
    }
    row = next(line for line in round_ratios(by_server).splitlines() if "server CPU per run" in line)
    # 20 / 10 and 2.0 / 2.0 (each round's better official setting); round 3 has no dev run. The
    # ratio of the medians over rounds would say 0.37× (2.2 against 6).
    assert "1.5× (1.0×–2.0×)" in row
    assert round_ratios({"dev": by_server["dev"]}) == ""
