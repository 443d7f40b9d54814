#!/usr/bin/env python3
"""A/B of two checkouts' CPU per run, measured side by side at the same moment.

    python bench/ab.py --base /tmp/base-checkout [--rounds 3] [--duration 10] [--mode prod]
    python bench/ab.py --base . --mode dev --new-env AGENTSERVER_INPROCESS_WORKERS=4
    python bench/ab.py --base /tmp/base-checkout --mode dev --one-at-a-time --rounds 8 --duration 6

Each round starts the production server (or ``dev``) of this checkout and of ``--base``
(e.g. ``git worktree add /tmp/base HEAD~1``), then drives both at once, each with its own
harness (``bench_agent_server.py``, throughput phase, 8 clients), and prints the CPU per run
of each process (web, worker, the harness itself) and the change against the base.
``--base-env`` and ``--new-env`` add environment variables to one side's server: with
``--base .`` that compares two settings of the same code.

Why at the same moment: this machine's speed drifts by tens of percent within minutes,
so a change of 3 % cannot be told from noise by runs one after another; two servers
sharing the machine's current speed can. Both compete for the same cores, so the absolute
figures are higher than ``run.py``'s: compare the two columns, not across days.

``--one-at-a-time`` runs the two one after the other instead (base first in odd rounds,
new first in even ones), for a change in how a server shares the cores (which CPUs it
runs on, how many threads): there the other server would be part of what is measured.
Short rounds keep the pair within the same minute; take the median of many.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Runs in a checkout (its own bench/run.py and tests/live.py): starts the server, prints
# its URL and process ids, and stops it when stdin closes.
SERVE = """
import json, sys
sys.path[:0] = [".", "bench"]
from run import make_server
server = make_server(sys.argv[1])
server.extra_env.update(json.loads(sys.argv[2]))
server.start()
pids = {"web": server.web.pid}
for proc in server.worker_procs:
    role = "beat" if b"beat" in open(f"/proc/{proc.pid}/cmdline", "rb").read() else "worker"
    pids[role + str(sum(name.startswith(role) for name in pids))] = proc.pid
print(json.dumps({"url": server.url, "pids": pids}), flush=True)
try:
    sys.stdin.read()
finally:
    server.stop()
"""


def start(checkout: Path, mode: str, env: dict[str, str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, mode, json.dumps(env)], cwd=checkout, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        raise RuntimeError(f"the server of {checkout} did not start")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def harness(server: dict, duration: float, out: dict, key: str) -> None:
    """The throughput phase against ``server``; stores the CPU per run by process in ``out``."""
    args = [
        sys.executable, str(BENCH / "bench_agent_server.py"), "--url", server["url"], "--phases", "tp",
        "--concurrency", "8", "--tp-duration", str(duration), "--warmup", "10", "--phase-max-s", str(duration + 60),
    ]
    for name, pid in server["pids"].items():
        args += ["--cpu-pids", f"{name}={pid}"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=duration + 300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        out[key] = {"error": result.stderr[-2000:]}
        return
    result = json.loads(lines[-1])
    level = result["results"]["tp"]["c8"]
    out[key] = {**level["cpu_ms_per_run"], "runs_per_s": level["runs_per_s"], "errors": result["errors"]["total"]}


def one_round(base: Path, mode: str, duration: float, envs: dict[str, dict[str, str]]) -> dict:
    servers = {}
    try:
        servers["base"] = start(base, mode, envs["base"])
        servers["new"] = start(ROOT, mode, envs["new"])
        out: dict = {}
        threads = [
            threading.Thread(target=harness, args=(servers[key][1], duration, out, key)) for key in ("base", "new")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out
    finally:
        for proc, _ in servers.values():
            stop(proc)


def one_round_alone(base: Path, mode: str, duration: float, envs: dict[str, dict[str, str]], order: list[str]) -> dict:
    """Each server alone on the machine, one after the other in ``order``."""
    checkouts, out = {"base": base, "new": ROOT}, {}
    for key in order:
        proc, server = start(checkouts[key], mode, envs[key])
        try:
            harness(server, duration, out, key)
        finally:
            stop(proc)
    return out


def environment(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, str]:
    if bad := [pair for pair in pairs if "=" not in pair]:
        parser.error(f"expected NAME=VALUE, got {bad}")
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per round")
    parser.add_argument("--mode", choices=("prod", "dev"), default="prod")
    parser.add_argument("--base-env", action="append", default=[], metavar="NAME=VALUE", help="for the base's server")
    parser.add_argument("--new-env", action="append", default=[], metavar="NAME=VALUE", help="for this checkout's server")
    parser.add_argument("--one-at-a-time", action="store_true", help="run the two servers in turn, not together")
    args = parser.parse_args(argv)
    envs = {"base": environment(parser, args.base_env), "new": environment(parser, args.new_env)}
    changes: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        if args.one_at_a_time:
            order = ["base", "new"] if number % 2 else ["new", "base"]
            out = one_round_alone(args.base.resolve(), args.mode, args.duration, envs, order)
        else:
            out = one_round(args.base.resolve(), args.mode, args.duration, envs)
        for key in ("base", "new"):
            out.setdefault(key, {"error": "the harness did not finish"})
        failed = [key for key in ("base", "new") if "error" in out[key] or out[key]["errors"]]
        if failed:
            print(f"round {number}: runs failed against {', '.join(failed)}: {out}", file=sys.stderr)
            return 1
        print(f"round {number} (ms of CPU per run; runs/s)")
        for process in [key for key in out["base"] if key not in ("runs_per_s", "errors")]:
            before, after = out["base"][process], out["new"].get(process)
            if after is None or not before:  # an idle process (beat) may use no CPU at all
                continue
            change = 100 * (after - before) / before
            changes.setdefault(process, []).append(change)
            print(f"  {process:10s} base {before:7.3f}   new {after:7.3f}   {change:+5.1f} %")
        before, after = out["base"]["runs_per_s"], out["new"]["runs_per_s"]
        changes.setdefault("runs/s", []).append(100 * (after - before) / before)
        print(f"  {'runs/s':10s} base {before:7.1f}   new {after:7.1f}   {changes['runs/s'][-1]:+5.1f} %")
    print("median change: " + ", ".join(f"{p} {statistics.median(c):+.1f} %" for p, c in changes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
