#!/usr/bin/env python3
"""Memory over many runs (issue 5, item 2): do the web and worker processes stay flat?

    python bench/bench_memory.py                  # 10,000 runs, RSS sampled every 1,000, ~6-10 min
    python bench/bench_memory.py --runs 3000 --every 500
    python bench/bench_memory.py --quick          # 600 runs, sampled every 100 (smoke run)

Starts our production setup (``tests.live.LiveServer`` mode="prod": uvicorn + one Celery worker
``-P threads -c 16``, fresh Postgres database dropped afterwards), runs ``--warmup`` runs that are
not counted, then ``--runs`` runs in blocks of ``--every``: each block is ``--seq-share`` of its
runs from one client in sequence, the rest from ``--concurrency`` clients at once. The runs cycle
through what a deployment does (unmodified ``langgraph-sdk``; every output checked):

  thread_wait   threads.create + runs.wait(echo)
  stateless     runs.wait(None, echo)  (temporary thread, deleted afterwards)
  stream        runs.stream(None, chain10, stream_mode="updates"): n0..n9 in order
  background    threads.create + runs.create(echo) + runs.join
  interrupt     runs.wait(interrupt_once) until interrupted, resumed with Command: counts 2 runs

After the warm-up and after every block it reads VmRSS (and VmHWM) of the web and worker
processes from /proc/<pid>/status, the number of keys in the server's Redis database and the
server's Postgres connections, and prints the series. Growth = mean of the last third of the
samples minus mean of the first third; a process is flagged as leaking when its growth exceeds
both ``--threshold-pct`` of its first-third mean and ``--threshold-mib``. Also printed: the
least-squares slope in MiB per 1,000 runs. Exit status 1 on a flagged leak or a failed run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from common import Errors, on_prod_server, tagged_log  # noqa: E402

CHAIN_NODES = [f"n{i}" for i in range(10)]
KINDS = ("thread_wait", "stateless", "stream", "background", "interrupt")
RUNS_PER_KIND = {"interrupt": 2}


log = tagged_log("memory")


# ---------------------------------------------------------------------------- probes
def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def redis_keys(url: str) -> int | None:
    try:
        import redis

        return int(redis.Redis.from_url(url, socket_timeout=3).dbsize())
    except Exception:  # noqa: BLE001
        return None


def redis_key_report(url: str, limit: int = 50_000) -> str:
    """Keys of the server's Redis database by prefix (ids masked), with how many never expire."""
    import re

    try:
        import redis

        r = redis.Redis.from_url(url, socket_timeout=5)
        groups: Counter[str] = Counter()
        forever: Counter[str] = Counter()
        keys = [k.decode(errors="replace") for _, k in zip(range(limit), r.scan_iter(count=1000), strict=False)]
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.ttl(k)
        for k, ttl in zip(keys, pipe.execute(), strict=True):
            shape = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", k)
            shape = re.sub(r"\d{6,}", "<n>", shape)
            groups[shape] += 1
            forever[shape] += ttl == -1
        return "; ".join(f"{shape} x{n:,} ({forever[shape]:,} without TTL)" for shape, n in groups.most_common(8))
    except Exception as e:  # noqa: BLE001
        return f"(redis key report failed: {e!r:.200})"


def pg_connections(db_name: str) -> int | None:
    try:
        import psycopg

        from tests.live import POSTGRES_ADMIN_URL

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db_name,)).fetchone()[0]
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------- runs
def make_client(url: str, timeout: float):
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=None, timeout=timeout)


def check_echo(out: Any, token: str) -> None:
    if not isinstance(out, dict) or out.get("items") != [token, f"echo:{token}"]:
        raise RuntimeError(f"echo output {out!r:.200}")


async def one_run(c, kind: str) -> None:
    token = uuid.uuid4().hex[:10]
    if kind == "thread_wait":
        tid = (await c.threads.create())["thread_id"]
        check_echo(await c.runs.wait(tid, "echo", input={"items": [token]}), token)
    elif kind == "stateless":
        check_echo(await c.runs.wait(None, "echo", input={"items": [token]}), token)
    elif kind == "stream":
        nodes = []
        async for part in c.runs.stream(None, "chain10", input={"items": [token]}, stream_mode="updates"):
            if part.event == "error":
                raise RuntimeError(f"stream error event: {part.data!r:.200}")
            if part.event == "updates" and isinstance(part.data, dict):
                nodes += [n for n in part.data if n in CHAIN_NODES]
        if nodes != CHAIN_NODES:
            raise RuntimeError(f"chain10 updates {nodes}")
    elif kind == "background":
        tid = (await c.threads.create())["thread_id"]
        run = await c.runs.create(tid, "echo", input={"items": [token]})
        check_echo(await c.runs.join(tid, run["run_id"]), token)
    elif kind == "interrupt":
        tid = (await c.threads.create())["thread_id"]
        first = await c.runs.wait(tid, "interrupt_once", input={"items": [token]})
        if not isinstance(first, dict) or first.get("items") != [token]:
            raise RuntimeError(f"interrupt first leg {first!r:.200}")
        out = await c.runs.wait(tid, "interrupt_once", command={"resume": "r"})
        if not isinstance(out, dict) or out.get("items") != [token, "answer:r"]:
            raise RuntimeError(f"interrupt resume {out!r:.200}")
    else:
        raise ValueError(kind)


class Load:
    """Issues runs, cycling through KINDS, and counts them (interrupt + resume count 2)."""

    def __init__(self, url: str, args, errs: Errors) -> None:
        self.url, self.args, self.errs = url, args, errs
        self.done = 0  # runs issued and finished (failed ones included: they count toward the total)
        self._next = 0

    def _kind(self) -> str:
        kind = KINDS[self._next % len(KINDS)]
        self._next += 1
        return kind

    async def _loop(self, c, quota: int, deadline: float) -> None:
        while self.done < quota and time.monotonic() < deadline:
            kind = self._kind()
            self.done += RUNS_PER_KIND.get(kind, 1)  # claimed before awaiting: quota is shared
            try:
                await one_run(c, kind)
            except Exception as e:  # noqa: BLE001
                self.errs.add(kind, repr(e))

    async def block(self, clients: list, n: int, deadline: float) -> None:
        """n runs: the sequential share from one client, then the rest from all clients."""
        start = self.done
        seq = int(n * self.args.seq_share)
        await self._loop(clients[0], start + seq, deadline)
        await asyncio.gather(*[self._loop(c, start + n, deadline) for c in clients])


def slope_per_1000(xs: list[int], ys: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 1000 if den else None


def growth(values: list[float]) -> tuple[float, float, float]:
    """(first-third mean, last-third mean, growth) in the values' unit."""
    third = max(1, len(values) // 3)
    first, last = statistics.fmean(values[:third]), statistics.fmean(values[-third:])
    return first, last, last - first


async def main_async(args, server) -> int:
    errs = Errors()
    procs = {"web": server.web.pid, **{f"worker{i}": p.pid for i, p in enumerate(server.worker_procs)}}
    clients = [make_client(server.url, args.request_timeout) for _ in range(args.concurrency)]
    load = Load(server.url, args, errs)
    series: list[dict[str, Any]] = []
    t0 = time.monotonic()
    deadline = t0 + args.max_s

    def sample(runs: int, block_s: float | None) -> None:
        row: dict[str, Any] = {"runs": runs, "elapsed_s": round(time.monotonic() - t0, 1)}
        for name, pid in procs.items():
            rss, hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
            row[name] = round(rss / 1024, 1) if rss is not None else None
            row[f"{name}_hwm"] = round(hwm / 1024, 1) if hwm is not None else None
        row["redis_keys"] = redis_keys(server.redis_url)
        row["pg_conns"] = pg_connections(server.db_name)
        row["runs_per_s"] = round(args.every / block_s, 1) if block_s else None
        row["errors"] = errs.total
        series.append(row)
        log(f"{runs:>6,} runs: " + ", ".join(f"{n} {row[n]} MiB" for n in procs)
            + f", redis keys {row['redis_keys']}, pg conns {row['pg_conns']}, errors {errs.total}")

    try:
        log(f"warm-up: {args.warmup} runs (not counted)")
        await load.block(clients, args.warmup, deadline)
        warm_errors = errs.total
        load.done = 0
        sample(0, None)
        while load.done < args.runs and time.monotonic() < deadline:
            b0 = time.monotonic()
            await load.block(clients, min(args.every, args.runs - load.done), deadline)
            sample(load.done, time.monotonic() - b0)
    finally:
        for c in clients:
            try:
                await c.http.client.aclose()
            except Exception:  # noqa: BLE001
                pass
    if load.done < args.runs:
        errs.add("bound", f"stopped by --max-s after {load.done} runs")

    # ------------------------------------------------------------------ report
    names = list(procs)
    head = "| runs | " + " | ".join(f"{n} RSS MiB" for n in names) + " | redis keys | pg conns | runs/s | errors |"
    print(head)
    print("|" + " ---: |" * (len(names) + 5))
    for row in series:
        print(f"| {row['runs']:,} | " + " | ".join(f"{row[n]}" for n in names)
              + f" | {row['redis_keys']} | {row['pg_conns']} | {row['runs_per_s'] or '–'} | {row['errors']} |")
    print()
    leaks = []
    xs = [r["runs"] for r in series]
    for n in names:
        ys = [r[n] for r in series if r[n] is not None]
        if len(ys) < 3:
            print(f"{n}: too few samples")
            continue
        first, last, grew = growth(ys)
        pct = grew / first * 100 if first else 0.0
        slope = slope_per_1000(xs[:len(ys)], ys)
        leak = grew > args.threshold_mib and pct > args.threshold_pct
        leaks += [n] if leak else []
        print(f"{n}: first third {first:.1f} MiB, last third {last:.1f} MiB, growth {grew:+.1f} MiB ({pct:+.1f} %), "
              f"slope {slope:+.2f} MiB / 1,000 runs, peak (VmHWM) {series[-1][f'{n}_hwm']} MiB"
              f" -> {'LEAK?' if leak else 'flat'} (threshold: > {args.threshold_mib} MiB and > {args.threshold_pct} %)")
    keys = [r["redis_keys"] for r in series if r["redis_keys"] is not None]
    if len(keys) >= 3:
        k0, k1, dk = growth(keys)
        print(f"redis keys: first third {k0:.0f}, last third {k1:.0f} ({dk:+.0f}); at the end: "
              f"{redis_key_report(server.redis_url)}")
    print(f"\n{load.done:,} runs in {time.monotonic() - t0:.0f}s (after {args.warmup} warm-up runs, "
          f"{warm_errors} warm-up errors); kinds cycled: {', '.join(KINDS)}; "
          f"{args.seq_share:.0%} sequential, the rest from {args.concurrency} clients")
    print(f"errors: {errs.total}" + (f" {dict(errs.counts)}" if errs.total else ""))
    for s in errs.samples:
        print(f"  {s}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"series": series, "errors": dict(errs.counts),
                                                   "leaks": leaks}, indent=1))
    return 1 if (leaks or errs.total) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--every", type=int, default=1_000, help="sample RSS every this many runs")
    p.add_argument("--warmup", type=int, default=200, help="runs before the first sample (not counted)")
    p.add_argument("--concurrency", type=int, default=8, help="clients in the concurrent part of a block")
    p.add_argument("--seq-share", type=float, default=0.25, help="share of each block run sequentially")
    p.add_argument("--threshold-pct", type=float, default=5.0)
    p.add_argument("--threshold-mib", type=float, default=8.0)
    p.add_argument("--request-timeout", type=float, default=60)
    p.add_argument("--max-s", type=float, default=840, help="stop (and report) after this long")
    p.add_argument("--quick", action="store_true", help="600 runs sampled every 100 (smoke run)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.every, args.warmup, args.max_s = 600, 100, 50, 180

    return on_prod_server(main_async, args, log)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop, drop the DB
    sys.exit(main())
