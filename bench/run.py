#!/usr/bin/env python3
"""One command: agentserver (production setup, and `dev`) against the official `langgraph dev`.

    python bench/run.py [--quick] [--rounds N] [--out bench/RESULTS.md]
                        [--only prod,dev,official,official-j10] [--with-official]

Each round starts every server fresh, one at a time, on a free 127.0.0.1 port, runs the
identical workload (``bench_agent_server.py`` beside this file, driven by the unmodified
``langgraph-sdk``) against it and stops it again:

  prod          uvicorn + one Celery worker (``-P threads -c 16``) on a fresh Postgres
                database ``agentserver_bench_<random>`` (dropped afterwards) and a Redis
                database of its own (3-15); ``tests.live.LiveServer`` starts it.
  dev           ``python manage.py dev`` (SQLite, one process).
  official      the official ``langgraph dev`` (``langgraph-cli[inmem]``, installed into the
                throwaway virtualenv ``$LG_OFFICIAL_VENV``, default /tmp/lg-official), with its
                real default of one job, and ``official-j10`` with ``--n-jobs-per-worker 10``.
                The table compares against the better of the two on each row.

Every run's output is checked by the harness, errors are counted and shown, every loop is
bounded in count and time, and each figure is the median over ``--rounds`` (default 2).
``--quick`` is a tiny workload for CI smoke tests; it skips the official server unless
``--with-official`` is given.  Exit status: 0 when every server ran with no error, 1 when
some run failed or a server did not start (the table is printed and written either way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
from bench_agent_server import flat_metrics  # noqa: E402

from tests.live import POSTGRES_ADMIN_URL, REDIS_BASE_URL, LiveServer, free_port  # noqa: E402

CONFIG = BENCH / "langgraph.json"
HARNESS = BENCH / "bench_agent_server.py"
OFFICIAL_VENV = Path(os.environ.get("LG_OFFICIAL_VENV", "/tmp/lg-official"))
WORKER_CONCURRENCY = 16
ALL_SERVERS = ("prod", "dev", "official", "official-j10")
LABELS = {
    "prod": "ours (prod)",
    "dev": "ours (dev)",
    "official": "official `langgraph dev`",
    "official-j10": "official `langgraph dev --n-jobs-per-worker 10`",
}

# Workloads (harness flags).  The official dev server needs ~1 s per run (its queue polls
# every 0.5 s), so its sequential loops are shorter, as in ../shared/bench/baselines.md.
FULL = dict(warmup=10, seq_n=100, tp_duration=10, stream_n=50, bg_n=200, interrupt_n=50,
            phase_max_s=150, request_timeout=60, max_total_s=600)
FULL_OFFICIAL = dict(FULL, warmup=3, seq_n=30, stream_n=20, interrupt_n=15)
QUICK = dict(warmup=1, seq_n=5, tp_duration=2, stream_n=3, bg_n=20, interrupt_n=3,
             phase_max_s=20, request_timeout=15, max_total_s=90)
QUICK_OFFICIAL = dict(QUICK, seq_n=3, stream_n=2, interrupt_n=2)

# The six figures of issue 5: (key, title, how to read the harness metrics, better, target).
FIGURES = [
    ("wait", "`runs.wait` p50, one-node graph, sequential (ms)", ["seq.stateless.p50_ms"], "low", 20.0),
    ("tp", "throughput, 8 clients, create thread + `runs.wait` (runs/s)", ["tp.c8.runs_per_s"], "high", 100.0),
    ("bg", "200 background runs, create + join all (s)", ["bg.total_s"], "low", 2.0),
    ("interrupt", "interrupt, then resume with `Command`, round trip p50 (ms)",
     ["interrupt.round_trip.p50_ms"], "low", 40.0),
    ("stream", "chain10 streamed: first event / whole run, p50 (ms)",
     ["stream.first_event.p50_ms", "stream.total.p50_ms"], "low", (10.0, 45.0)),
    ("cpu", "server CPU per run, all our processes, at 8 clients (ms)",
     ["tp.c8.cpu_ms_per_run.server"], "low", 10.0),
]
# Which harness error counters belong to which figure.
FIGURE_PHASES = {"wait": ("seq.stateless", "seq.warmup", "seq"), "tp": ("tp.",), "bg": ("bg",),
                 "interrupt": ("interrupt",), "stream": ("stream",), "cpu": ("tp.",)}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ servers
class BenchServer(LiveServer):
    """tests.live.LiveServer with the bench's config, database name and worker size."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.db_name = f"agentserver_bench_{uuid.uuid4().hex[:10]}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"agentserver-bench-{self.mode}-"))

    def start_worker(self, concurrency: int = WORKER_CONCURRENCY) -> subprocess.Popen:
        return super().start_worker(concurrency)

    def cpu_pids(self) -> list[int]:
        return [p.pid for p in [self.web, *self.worker_procs] if p is not None]


@dataclass
class OfficialServer:
    """`langgraph dev` from its own virtualenv, in a scratch folder (its store lives there)."""

    jobs: int | None = None
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="lg-official-bench-"))
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> OfficialServer:
        ensure_official_venv()
        app = self.tmp / "app"
        app.mkdir()
        for name in ("graphs.py", "langgraph.json"):
            shutil.copy(BENCH / name, app / name)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "DJANGO_", "AGENTSERVER_"))}
        env.update(LANGSMITH_TRACING="false", LANGCHAIN_TRACING_V2="false", LANGGRAPH_CLI_NO_ANALYTICS="1",
                   PYTHONUNBUFFERED="1")
        args = [str(OFFICIAL_VENV / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload",
                "--host", "127.0.0.1", "--port", str(self.port), "--config", str(app / "langgraph.json"),
                "--server-log-level", "WARNING"]
        if self.jobs:
            args += ["--n-jobs-per-worker", str(self.jobs)]
        self._log = open(self.tmp / "server.log", "ab")
        self.proc = subprocess.Popen(args, cwd=app, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited early:\n{self.logs()}")
            # If the port was taken meanwhile, langgraph dev silently picks another one.
            for line in self.logs().splitlines():
                found = re.search(r"API:\W*(http://127\.0\.0\.1:\d+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
                if found:
                    self.url = found.group(1)
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"langgraph dev not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        path = self.tmp / "server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def cpu_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc is not None:
            LiveServer.kill(self.proc)
        if self._log:
            self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def ensure_official_venv() -> None:
    """Create the throwaway virtualenv with langgraph-cli[inmem] once; reuse it afterwards."""
    if (OFFICIAL_VENV / "bin" / "langgraph").exists():
        return
    log(f"installing langgraph-cli[inmem] into {OFFICIAL_VENV} (once)")
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(OFFICIAL_VENV)], check=True)
    subprocess.run([str(OFFICIAL_VENV / "bin" / "pip"), "install", "-q", "langgraph-cli[inmem]"], check=True)


def make_server(name: str):
    if name == "prod":
        return BenchServer(mode="prod", config=CONFIG, extra_env={"SECRET_KEY": uuid.uuid4().hex * 2})
    if name == "dev":
        return BenchServer(mode="dev", config=CONFIG)
    if name == "official":
        return OfficialServer()
    if name == "official-j10":
        return OfficialServer(jobs=10)
    raise ValueError(name)


# ------------------------------------------------------------------------- diagnostics
def postgres_pid() -> int | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        return int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    except Exception:  # noqa: BLE001
        return None


def redis_pid() -> int | None:
    try:
        import redis

        return int(redis.Redis.from_url(f"{REDIS_BASE_URL}/0", socket_timeout=3).info("server")["process_id"])
    except Exception:  # noqa: BLE001
        return None


class ConnectionSampler(threading.Thread):
    """Peak Postgres connections to the bench database, and to the whole cluster."""

    def __init__(self, db_name: str | None) -> None:
        super().__init__(daemon=True)
        self.db_name, self.peak_db, self.peak_all, self._stop = db_name, 0, 0, threading.Event()

    def run(self) -> None:
        try:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                while not self._stop.wait(0.5):
                    n_db, n_all = conn.execute(
                        "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend'", (self.db_name,)).fetchone()
                    self.peak_db, self.peak_all = max(self.peak_db, n_db), max(self.peak_all, n_all)
        except Exception:  # noqa: BLE001
            pass

    def stop(self) -> None:
        self._stop.set()


# ----------------------------------------------------------------------------- running
def harness_args(url: str, label: str, workload: dict, cpu: dict[str, list[int]]) -> list[str]:
    args = [sys.executable, str(HARNESS), "--url", url, "--label", label,
            "--phases", "seq,tp,stream,bg,interrupt", "--seq-variants", "stateless,thread_fresh",
            "--concurrency", "8"]
    for key, value in workload.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    for name, pids in cpu.items():
        if pids:
            args += ["--cpu-pids", f"{name}={','.join(map(str, pids))}"]
    return args


def run_one(name: str, workload: dict, round_no: int) -> dict:
    """Start one server, run the harness against it, stop it.  Returns the harness result."""
    label = f"{name}#{round_no}"
    server = make_server(name)
    sampler = None
    try:
        t0 = time.monotonic()
        server.start()
        log(f"{label}: up at {server.url} in {time.monotonic() - t0:.1f}s")
        cpu = {"server": server.cpu_pids()}
        if name == "prod":
            cpu.update(postgres=[p for p in [postgres_pid()] if p], redis=[p for p in [redis_pid()] if p])
            sampler = ConnectionSampler(server.db_name)
            sampler.start()
        args = harness_args(server.url, label, workload, cpu)
        bound = workload["max_total_s"] + 5 * workload["phase_max_s"] + 120
        try:
            proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=bound,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
        except subprocess.TimeoutExpired:
            return {"label": label, "fatal": f"harness did not finish within {bound:.0f}s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"label": label, "fatal": f"harness crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"}
        result = json.loads(lines[-1])
        if sampler:
            sampler.stop()
            result["pg_connections_peak"] = {"bench_db": sampler.peak_db, "cluster": sampler.peak_all}
        errs = result.get("errors", {})
        log(f"{label}: done, {errs.get('total', 0)} error(s)"
            + (f": {errs.get('samples', [])[:3]}" if errs.get("total") else ""))
        if errs.get("total") and hasattr(server, "logs"):
            result["server_log_tail"] = server.logs()[-3000:]
        return result
    except Exception as e:  # noqa: BLE001
        log(f"{label}: FAILED: {e!r}"[:2000])
        return {"label": label, "fatal": repr(e)[:3000]}
    finally:
        if sampler:
            sampler.stop()
        try:
            server.stop()
        except Exception as e:  # noqa: BLE001
            log(f"{label}: stop failed: {e!r}")


# ------------------------------------------------------------------------------ tables
def median_metrics(results: list[dict]) -> dict[str, dict[str, float]]:
    per: dict[str, list[float]] = {}
    for res in results:
        if "fatal" in res:
            continue
        for key, value in flat_metrics(res).items():
            per.setdefault(key, []).append(value)
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for k, v in per.items()}


def figure_errors(results: list[dict], fig: str) -> int:
    n = 0
    for res in results:
        for phase, count in res.get("errors", {}).get("by_phase", {}).items():
            if phase.startswith(FIGURE_PHASES[fig]):
                n += count
    return n


def fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def figure_values(med: dict, keys: list[str]) -> list[float | None]:
    return [med.get(k, {}).get("median") for k in keys]


def cell(med: dict, results: list[dict], fig: str, keys: list[str]) -> str:
    if not results:
        return "not run"
    vals = figure_values(med, keys)
    nerr = figure_errors(results, fig)
    fatal = sum(1 for r in results if "fatal" in r)
    if all(v is None for v in vals):
        return "**error**" if (nerr or fatal) else "–"
    text = " / ".join(fmt(v) for v in vals)
    if nerr:
        text += f" ⚠{nerr} err"
    return text


def times(x: float) -> str:
    return f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def ratio(off: list[float | None], ours: list[float | None]) -> str:
    return " / ".join("–" if o is None or not u else times(o / u) for o, u in zip(off, ours, strict=True))


def meets(vals: list[float | None], target, better: str) -> str:
    targets = target if isinstance(target, tuple) else (target,)
    if any(v is None for v in vals):
        return "–"
    ok = all((v <= t) if better == "low" else (v >= t) for v, t in zip(vals, targets, strict=True))
    return "yes" if ok else "**no**"


def build_table(by_server: dict[str, list[dict]]) -> tuple[str, dict]:
    meds = {name: median_metrics(res) for name, res in by_server.items()}
    has_official = bool(by_server.get("official") or by_server.get("official-j10"))
    lines = [
        "| figure (median of rounds) | ours (prod) | ours (dev) | official (best of default / j10) "
        "| official ÷ ours (prod) | official ÷ ours (dev) | target | prod meets target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    summary: dict[str, Any] = {}
    for fig, title, keys, better, target in FIGURES:
        prod = figure_values(meds.get("prod", {}), keys)
        dev = figure_values(meds.get("dev", {}), keys)
        off_cell, off_vals = "not run", [None] * len(keys)
        if has_official:
            best: list[float | None] = []
            which: list[str] = []
            for k in keys:
                cands = [(meds[n][k]["median"], n) for n in ("official", "official-j10")
                         if n in meds and k in meds[n]]
                if not cands:
                    best.append(None)
                    which.append("")
                    continue
                v, n = (min if better == "low" else max)(cands)
                best.append(v)
                which.append("j10" if n == "official-j10" else "default")
            off_vals = best
            off_results = by_server.get("official", []) + by_server.get("official-j10", [])
            off_cell = cell({k: {"median": v} for k, v in zip(keys, best, strict=True) if v is not None},
                            off_results, fig, keys)
            if any(which):
                off_cell += f" ({'/'.join(w for w in which if w)})"
        tgt = " / ".join(f"{'≤' if better == 'low' else '≥'} {fmt(t)}"
                         for t in (target if isinstance(target, tuple) else (target,)))
        lines.append(
            f"| {title} | {cell(meds.get('prod', {}), by_server.get('prod', []), fig, keys)} "
            f"| {cell(meds.get('dev', {}), by_server.get('dev', []), fig, keys)} | {off_cell} "
            f"| {ratio(off_vals, prod)} | {ratio(off_vals, dev)} | {tgt} | {meets(prod, target, better)} |"
        )
        summary[fig] = {"prod": prod, "dev": dev, "official": off_vals, "target": target}
    return "\n".join(lines), summary


def round_ratios(by_server: dict[str, list[dict]]) -> str:
    """Official ÷ ours within each round, then the median (and range) over rounds.

    The servers of a round run within minutes of each other, the rounds up to half an hour
    apart: this machine's speed drifts by tens of percent in between, which moves a ratio of
    medians, taken across rounds, more than a ratio taken within each round."""
    def by_round(name: str) -> dict[str, dict[str, float]]:
        return {res["label"].rpartition("#")[2]: flat_metrics(res)
                for res in by_server.get(name, []) if "fatal" not in res}

    officials = [by_round(n) for n in ("official", "official-j10")]
    ours = {n: by_round(n) for n in ("prod", "dev") if by_server.get(n)}
    if not any(officials) or not ours:
        return ""
    out = ["| figure | " + " | ".join(f"official ÷ ours ({n})" for n in ours) + " |",
           "| --- |" + " ---: |" * len(ours)]
    for _fig, title, keys, better, _target in FIGURES:
        cells = []
        for rounds in ours.values():
            parts = []
            for key in keys:
                ratios = []
                for rnd, metrics in rounds.items():
                    cands = [o[rnd][key] for o in officials if key in o.get(rnd, {})]
                    if cands and metrics.get(key):
                        ratios.append((min if better == "low" else max)(cands) / metrics[key])
                parts.append(f"{times(statistics.median(ratios))} ({times(min(ratios))}–{times(max(ratios))})"
                             if ratios else "–")
            cells.append(" / ".join(parts))
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# The official server's throughput (default setting, 8 clients) in ../shared/bench/baselines.md, the
# measurements the absolute targets were set against.
BASELINE_OFFICIAL_RUNS_PER_S = (48, 86)


def baseline_speed(by_server: dict[str, list[dict]]) -> str:
    """How fast this machine was against the one the absolute targets were set on, told by the
    official server's throughput (the speed probe has no baseline). The machine's speed drifts by
    up to 3× between days: a target met on a fast day may be missed at the baselines' speed."""
    measured = median_metrics(by_server.get("official") or []).get("tp.c8.runs_per_s")
    if not measured:
        return ""
    low, high = BASELINE_OFFICIAL_RUNS_PER_S
    runs = measured["median"]
    if runs > high:
        verdict = f"{runs / high:.1f}× the top of that range: the absolute targets are easier to meet here than where they were set"
    elif runs < low:
        verdict = "below that range: the machine was slower than where the targets were set"
    else:
        verdict = "within that range: the absolute targets apply as set"
    return (
        f"The absolute targets were set when the official server (default setting) did {low}–{high} "
        f"runs/s at 8 clients (../shared/bench/baselines.md); in this run it did {fmt(runs)} runs/s, {verdict}."
    )


def details(by_server: dict[str, list[dict]]) -> str:
    keys = ["seq.stateless.p50_ms", "seq.stateless.p95_ms", "seq.thread_fresh.p50_ms", "seq.thread_create.p50_ms",
            "tp.c8.runs_per_s", "tp.c8.p50_ms", "tp.c8.cpu_ms_per_run.server", "tp.c8.cpu_ms_per_run.postgres",
            "tp.c8.cpu_ms_per_run.redis", "tp.c8.cpu_ms_per_run.client", "stream.first_event.p50_ms",
            "stream.first_update.p50_ms", "stream.total.p50_ms", "bg.total_s", "bg.create_phase_s",
            "interrupt.first_leg.p50_ms", "interrupt.resume_leg.p50_ms", "interrupt.round_trip.p50_ms",
            "errors.total"]
    names = [n for n in ALL_SERVERS if by_server.get(n)]
    meds = {n: median_metrics(by_server[n]) for n in names}
    out = ["| metric: median (min–max) | " + " | ".join(names) + " |",
           "| --- |" + " ---: |" * len(names)]
    for k in keys:
        if not any(k in meds[n] for n in names):
            continue
        row = []
        for n in names:
            m = meds[n].get(k)
            row.append("–" if m is None else f"{fmt(m['median'])} ({fmt(m['min'])}–{fmt(m['max'])})")
        out.append(f"| {k} | " + " | ".join(row) + " |")
    return "\n".join(out)


def error_report(by_server: dict[str, list[dict]]) -> str:
    out = []
    for results in by_server.values():
        for res in results:
            if "fatal" in res:
                out.append(f"- {res['label']}: did not complete: {res['fatal'][:600]}")
                continue
            errs = res.get("errors", {})
            if errs.get("total"):
                out.append(f"- {res['label']}: {errs['total']} error(s) by phase {errs.get('by_phase')}")
                for s in errs.get("samples", [])[:5]:
                    out.append(f"    - {s[:300]}")
            pk = res.get("pg_connections_peak")
            if pk:
                out.append(f"- {res['label']}: peak Postgres connections: {pk['bench_db']} to the bench "
                           f"database, {pk['cluster']} in the whole cluster")
    return "\n".join(out) or "- none"


# ----------------------------------------------------------------------- machine, versions
def machine() -> dict[str, str]:
    info = {"nproc": str(os.cpu_count()), "python": platform.python_version(), "os": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        info["memory"] = f"{int(mem.split()[1]) / 1024 / 1024:.1f} GiB"
        info["load average at start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except Exception:  # noqa: BLE001
        pass
    return info


def speed_probe() -> str:
    """CPU time of a fixed pure-Python loop, best of three. This machine's speed drifts by 2.5×
    over a day, and every figure with it: compare runs only at similar probes."""
    best = min(_timed_loop() for _ in range(3))
    return f"{best * 1000:.0f} ms (CPU of a fixed pure-Python loop, best of 3; lower is faster)"


def _timed_loop() -> float:
    start = time.process_time()
    sum(i * i for i in range(3_000_000))
    return time.process_time() - start


def versions(include_official: bool) -> dict[str, str]:
    from importlib import metadata as md

    out = {}
    for pkg in ("langgraph", "langgraph-checkpoint", "langgraph-sdk", "django", "celery", "uvicorn"):
        try:
            out[f"{pkg} (ours)"] = md.version(pkg)
        except md.PackageNotFoundError:
            out[f"{pkg} (ours)"] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["agentserver commit"] = commit + (" (+ uncommitted changes)" if dirty else "")
    except Exception:  # noqa: BLE001
        out["agentserver commit"] = "unknown"
    if include_official and (OFFICIAL_VENV / "bin" / "python").exists():
        code = ("import importlib.metadata as m, platform; print(platform.python_version()); "
                "[print(p, m.version(p)) for p in ('langgraph', 'langgraph-api', 'langgraph-cli', "
                "'langgraph-runtime-inmem')]")
        res = subprocess.run([str(OFFICIAL_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True)
        lines = res.stdout.split("\n")
        if lines and lines[0]:
            out["python (official)"] = lines[0]
        for ln in lines[1:]:
            if ln.strip():
                pkg, ver = ln.split()
                out[f"{pkg} (official)"] = ver
    return out


# -------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny workload (CI smoke); skips the official server")
    p.add_argument("--with-official", action="store_true", help="with --quick: run the official server too")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per server (median reported)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ALL_SERVERS)}")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="markdown report to write")
    p.add_argument("--json-out", default=None, help="also write all raw harness results (JSON) here")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if runs failed")
    args = p.parse_args(argv)

    servers = [s.strip() for s in args.only.split(",")] if args.only else list(ALL_SERVERS)
    if args.quick and not args.with_official and not args.only:
        servers = [s for s in servers if not s.startswith("official")]
    unknown = [s for s in servers if s not in ALL_SERVERS]
    if unknown:
        p.error(f"unknown server(s) {unknown}")
    rounds = max(1, args.rounds)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    mach = machine()
    mach["speed probe at start"] = speed_probe()

    by_server: dict[str, list[dict]] = {s: [] for s in servers}
    t_all = time.monotonic()
    for r in range(1, rounds + 1):
        for name in servers:
            official = name.startswith("official")
            workload = (QUICK_OFFICIAL if official else QUICK) if args.quick else (
                FULL_OFFICIAL if official else FULL)
            log(f"round {r}/{rounds}: {name}")
            by_server[name].append(run_one(name, workload, r))

    mach["speed probe at end"] = speed_probe()
    table, summary = build_table(by_server)
    vers = versions(any(s.startswith("official") for s in servers))
    total_errors = sum(res.get("errors", {}).get("total", 0) for rs in by_server.values() for res in rs)
    fatal = sum(1 for rs in by_server.values() for res in rs if "fatal" in res)
    speed = "" if args.quick else baseline_speed(by_server)
    paired = round_ratios(by_server)

    report = [
        "# Benchmark: agentserver against the official `langgraph dev`",
        "",
        f"Generated by `python bench/run.py{' --quick' if args.quick else ''} --rounds {rounds}` on {started}, "
        f"in {time.monotonic() - t_all:.0f} s. Workload: {'quick (smoke, not a measurement)' if args.quick else 'full'}; "
        f"each figure is the median over {rounds} round(s), each server started fresh per round. "
        "See bench/README.md for what each figure means.",
        "",
        table,
        "",
        "Ratios are official ÷ ours: above 1× we are faster on latency rows, below 1× we are faster on the "
        "throughput row. ⚠ marks figures whose runs had errors (failed runs are excluded from the figure).",
        "",
        *([speed, ""] if speed else []),
        *(["## Per round", "",
           "The ratio within each round (official: the better of default and j10 in that round), then "
           "the median and range over rounds: the servers of a round run minutes apart, the rounds "
           "further, and the machine's speed drifts in between.", "", paired, ""] if paired else []),
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in mach.items()],
        "",
        "## Versions",
        "",
        *[f"- {k}: {v}" for k, v in vers.items()],
        "",
        "## All metrics",
        "",
        details(by_server),
        "",
        "CPU-ms per run at 8 clients includes each client's warmup run; `postgres` and `redis` are the "
        "whole shared services (other work on the machine included), `client` is the load generator.",
        "",
        "## Errors and diagnostics",
        "",
        error_report(by_server),
        "",
    ]
    text = "\n".join(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(by_server, default=str, indent=1))
    print(table)
    print()
    print(error_report(by_server))
    print(f"\nwritten to {args.out}")
    if (total_errors or fatal) and not args.allow_errors:
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop servers, drop DBs
    sys.exit(main())
