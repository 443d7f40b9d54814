#!/usr/bin/env python3
"""Benchmark any LangGraph-Agent-Server-compatible HTTP server with the
official ``langgraph-sdk`` async client.

The server must have the graphs from ``graphs.py`` (beside this file)
registered as ``echo``, ``chain10`` and ``interrupt_once`` (names are flags).
Every run's output is checked; wrong outputs and exceptions are counted as
errors and excluded from the latency samples.

Phases (``--phases``, default all):

  seq        sequential ``runs.wait`` latency of ``echo``:
               stateless      runs.wait(None, ...)
               thread_fresh   runs.wait(thread, ...) on a new thread each time
                              (thread created outside the timed region)
               thread_reused  runs.wait(thread, ...) on one thread, N times
  tp         throughput: C concurrent clients (own SDK client each), each
             looping threads.create + runs.wait(echo) until the time or count
             bound; runs/s, and p50/p95 of one create+wait iteration.
  stream     runs.stream(None, chain10, stream_mode="updates"): time to first
             SSE event (the server's ``metadata`` event), time to first
             ``updates`` event, and total time; checks n0..n9 arrive in order.
  bg         background runs: create N threads (untimed), then runs.create on
             each (bounded concurrency), then runs.join all; total seconds.
  interrupt  runs.wait(thread, interrupt_once, input) -> interrupted;
             runs.wait(thread, interrupt_once, command={"resume": r}) -> done.
             First leg, resume leg, and the round trip.

CPU accounting (optional, Linux): ``--cpu-pids server=PID --cpu-pids postgres=PID``
adds CPU seconds used by each process tree per phase and CPU-ms per run per
throughput level (client's own CPU always included).  On a shared, noisy
2-core machine CPU-ms per run is steadier than wall-clock numbers.

Output: one JSON line on stdout (prefixed by nothing, so ``| tail -1`` or
``--json-out FILE`` (appends) gets it) plus a table on stderr.

Aggregate several result lines (e.g. 3 repeats) into median (min-max):

  python bench_agent_server.py --aggregate results.jsonl

Every load loop is bounded in count and in time.  Only point it at servers on
this machine (loopback).
"""

# ruff: noqa: B023  (the closures in phase_tp are awaited within their loop iteration)
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any

os.environ.setdefault("LANGSMITH_TRACING", "false")
os.environ.setdefault("LANGCHAIN_TRACING_V2", "false")

try:
    from langgraph_sdk import get_client
except ImportError:  # pragma: no cover
    print("langgraph-sdk is required: pip install langgraph-sdk", file=sys.stderr)
    raise

CHAIN_NODES = [f"n{i}" for i in range(10)]


# ----------------------------------------------------------------- helpers
def pct(samples: list[float], p: float) -> float | None:
    """Percentile with linear interpolation (p in 0..100)."""
    if not samples:
        return None
    s = sorted(samples)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize_ms(samples_s: list[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in samples_s]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p95_ms": round(pct(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


class Errors:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: list[str] = []

    def add(self, phase: str, what: str) -> None:
        self.counts[phase] += 1
        if len(self.samples) < 20:
            self.samples.append(f"{phase}: {what[:300]}")

    def total(self) -> int:
        return sum(self.counts.values())


# ------------------------------------------------------------ CPU accounting
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds incl. reaped children) for every process."""
    out: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            # rest[0]=state rest[1]=ppid ... utime=rest[11] stime=rest[12] cutime=rest[13] cstime=rest[14]
            cpu = sum(int(x) for x in rest[11:15]) / _CLK
            out[int(d)] = (int(rest[1]), cpu)
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of root PIDs and all their descendants,
    plus this (client) process as "client"."""
    snap: dict[str, float] = {}
    if groups:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        for name, roots in groups.items():
            seen, stack, total = set(), list(roots), 0.0
            while stack:
                pid = stack.pop()
                if pid in seen or pid not in table:
                    continue
                seen.add(pid)
                total += table[pid][1]
                stack.extend(children.get(pid, []))
            snap[name] = total
    ru = resource.getrusage(resource.RUSAGE_SELF)
    snap["client"] = ru.ru_utime + ru.ru_stime
    return snap


def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a.get(k, 0.0), 3) for k in b}


def tok() -> str:
    return uuid.uuid4().hex[:12]


def _values(result: Any) -> dict:
    """runs.wait / runs.join return the thread's values dict."""
    if isinstance(result, dict):
        if "__error__" in result:
            raise RuntimeError(f"server error: {result['__error__']}")
        return result
    raise RuntimeError(f"unexpected result type {type(result).__name__}: {result!r:.200}")


def check_echo(result: Any, t: str, fresh: bool = True) -> None:
    items = _values(result).get("items")
    want = [t, f"echo:{t}"]
    if fresh:
        if items != want:
            raise RuntimeError(f"echo output mismatch: {items!r:.200} != {want!r}")
    else:
        if not isinstance(items, list) or items[-2:] != want:
            raise RuntimeError(f"echo output mismatch (tail): {items!r:.200}")


def make_client(url: str, timeout: float):
    # api_key=None: never pick up a LangSmith key from the environment.
    return get_client(url=url, api_key=None, timeout=timeout)


async def close_client(c) -> None:
    try:
        await c.http.client.aclose()
    except Exception:
        pass


# ------------------------------------------------------------------ phases
async def phase_seq(args, errs: Errors) -> dict:
    c = make_client(args.url, args.request_timeout)
    out: dict[str, Any] = {}
    deadline = time.monotonic() + args.phase_max_s
    try:
        # warmup (not recorded)
        for _ in range(args.warmup):
            t = tok()
            try:
                r = await c.runs.wait(None, args.assistant, input={"items": [t]})
                check_echo(r, t)
            except Exception as e:  # noqa: BLE001
                errs.add("seq.warmup", repr(e))

        # stateless
        lat: list[float] = []
        for _ in range(args.seq_n if "stateless" in args.seq_variants else 0):
            if time.monotonic() > deadline:
                break
            t = tok()
            t0 = time.perf_counter()
            try:
                r = await c.runs.wait(None, args.assistant, input={"items": [t]})
                dt = time.perf_counter() - t0
                check_echo(r, t)
                lat.append(dt)
            except Exception as e:  # noqa: BLE001
                errs.add("seq.stateless", repr(e))
        if "stateless" in args.seq_variants:
            out["stateless"] = summarize_ms(lat)

        # thread_fresh (thread creation untimed, but measured separately)
        lat, create_lat = [], []
        for _ in range(args.seq_n if "thread_fresh" in args.seq_variants else 0):
            if time.monotonic() > deadline:
                break
            t = tok()
            try:
                t0 = time.perf_counter()
                th = await c.threads.create()
                create_lat.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                r = await c.runs.wait(th["thread_id"], args.assistant, input={"items": [t]})
                dt = time.perf_counter() - t0
                check_echo(r, t)
                lat.append(dt)
            except Exception as e:  # noqa: BLE001
                errs.add("seq.thread_fresh", repr(e))
        if "thread_fresh" in args.seq_variants:
            out["thread_fresh"] = summarize_ms(lat)
            out["thread_create"] = summarize_ms(create_lat)

        # thread_reused
        lat = []
        if "thread_reused" not in args.seq_variants:
            return out
        try:
            th = await c.threads.create()
            tid = th["thread_id"]
            for _ in range(args.seq_n):
                if time.monotonic() > deadline:
                    break
                t = tok()
                t0 = time.perf_counter()
                try:
                    r = await c.runs.wait(tid, args.assistant, input={"items": [t]})
                    dt = time.perf_counter() - t0
                    check_echo(r, t, fresh=False)
                    lat.append(dt)
                except Exception as e:  # noqa: BLE001
                    errs.add("seq.thread_reused", repr(e))
        except Exception as e:  # noqa: BLE001
            errs.add("seq.thread_reused", repr(e))
        out["thread_reused"] = summarize_ms(lat)
    finally:
        await close_client(c)
    return out


async def phase_tp(args, errs: Errors) -> dict:
    out: dict[str, Any] = {}
    for conc in args.concurrency:
        clients = [make_client(args.url, args.request_timeout) for _ in range(conc)]
        lat: list[float] = []
        ok = 0
        started = 0
        n_err = 0
        start_evt = asyncio.Event()
        ready = 0

        async def one(c) -> None:
            t = tok()
            th = await c.threads.create()
            r = await c.runs.wait(th["thread_id"], args.assistant, input={"items": [t]})
            check_echo(r, t)

        async def worker(c) -> None:
            nonlocal ok, started, n_err, ready
            # per-client warmup: opens the connection, not recorded
            try:
                await one(c)
            except Exception as e:  # noqa: BLE001
                errs.add(f"tp.c{conc}.warmup", repr(e))
            ready += 1
            if ready == conc:
                clock["t_start"] = time.perf_counter()
                clock["deadline"] = time.monotonic() + args.tp_duration
                start_evt.set()
            await start_evt.wait()
            deadline = clock["deadline"]
            while time.monotonic() < deadline and started < args.tp_max_runs:
                started += 1
                t0 = time.perf_counter()
                try:
                    await one(c)
                    lat.append(time.perf_counter() - t0)
                    ok += 1
                except Exception as e:  # noqa: BLE001
                    n_err += 1
                    errs.add(f"tp.c{conc}", repr(e))

        clock: dict[str, float] = {}
        cpu0 = cpu_snapshot(args.cpu_groups)
        tasks = [asyncio.create_task(worker(c)) for c in clients]
        try:
            await asyncio.wait_for(
                asyncio.gather(*tasks), timeout=args.tp_duration + args.request_timeout + 30
            )
        except TimeoutError:
            for tk in tasks:
                tk.cancel()
            errs.add(f"tp.c{conc}", "phase timed out")
        elapsed = time.perf_counter() - clock.get("t_start", time.perf_counter())
        cpu = cpu_delta(cpu0, cpu_snapshot(args.cpu_groups))
        for c in clients:
            await close_client(c)
        out[f"c{conc}"] = {
            # includes the per-client warmup runs (conc of them)
            "cpu_s": cpu,
            "cpu_ms_per_run": {k: round(1000 * v / max(1, ok + conc), 3) for k, v in cpu.items()},
            "concurrency": conc,
            "ok": ok,
            "errors": n_err,
            "elapsed_s": round(elapsed, 3),
            "runs_per_s": round(ok / elapsed, 2) if elapsed > 0 else None,
            "iteration": summarize_ms(lat),
        }
    return out


async def phase_stream(args, errs: Errors) -> dict:
    c = make_client(args.url, args.request_timeout)
    ttfe, ttfu, total = [], [], []
    deadline = time.monotonic() + args.phase_max_s
    first_events: Counter[str] = Counter()

    async def one(record: bool) -> None:
        t = tok()
        t0 = time.perf_counter()
        t_first = t_upd = None
        nodes: list[str] = []
        async for part in c.runs.stream(
            None, args.chain_assistant, input={"items": [t]}, stream_mode="updates"
        ):
            now = time.perf_counter()
            if t_first is None:
                t_first = now
                if record:
                    first_events[part.event] += 1
            if part.event == "error":
                raise RuntimeError(f"stream error event: {part.data!r:.200}")
            if part.event == "updates" or part.event.startswith("updates|"):
                if t_upd is None:
                    t_upd = now
                if isinstance(part.data, dict):
                    for node, upd in part.data.items():
                        if node in CHAIN_NODES:
                            if upd != {"items": [node]}:
                                raise RuntimeError(f"bad update for {node}: {upd!r:.200}")
                            nodes.append(node)
        t_end = time.perf_counter()
        if nodes != CHAIN_NODES:
            raise RuntimeError(f"chain10 updates out of order/missing: {nodes}")
        if record:
            ttfe.append(t_first - t0)
            ttfu.append(t_upd - t0)
            total.append(t_end - t0)

    try:
        for _ in range(min(args.warmup, 5)):
            try:
                await one(False)
            except Exception as e:  # noqa: BLE001
                errs.add("stream.warmup", repr(e))
        for _ in range(args.stream_n):
            if time.monotonic() > deadline:
                break
            try:
                await one(True)
            except Exception as e:  # noqa: BLE001
                errs.add("stream", repr(e))
    finally:
        await close_client(c)
    return {
        "first_event": summarize_ms(ttfe),
        "first_update": summarize_ms(ttfu),
        "total": summarize_ms(total),
        "first_event_types": dict(first_events),
    }


async def phase_bg(args, errs: Errors) -> dict:
    n = args.bg_n
    c = make_client(args.url, args.request_timeout)
    out: dict[str, Any] = {"n": n}
    try:
        sem = asyncio.Semaphore(args.bg_create_concurrency)

        async def mk_thread() -> str | None:
            async with sem:
                try:
                    return (await c.threads.create())["thread_id"]
                except Exception as e:  # noqa: BLE001
                    errs.add("bg.thread_create", repr(e))
                    return None

        t0 = time.perf_counter()
        tids = [x for x in await asyncio.gather(*[mk_thread() for _ in range(n)]) if x]
        out["threads_create_s"] = round(time.perf_counter() - t0, 3)

        toks = {tid: tok() for tid in tids}

        async def mk_run(tid: str):
            async with sem:
                try:
                    run = await c.runs.create(tid, args.assistant, input={"items": [toks[tid]]})
                    return tid, run["run_id"]
                except Exception as e:  # noqa: BLE001
                    errs.add("bg.create", repr(e))
                    return None

        jsem = asyncio.Semaphore(args.bg_join_concurrency)
        ok = 0

        async def join(tid: str, rid: str) -> None:
            nonlocal ok
            async with jsem:
                try:
                    r = await c.runs.join(tid, rid)
                    check_echo(r, toks[tid])
                    ok += 1
                except Exception as e:  # noqa: BLE001
                    errs.add("bg.join", repr(e))

        t_start = time.perf_counter()
        try:
            created = await asyncio.wait_for(
                asyncio.gather(*[mk_run(t) for t in tids]), timeout=args.phase_max_s
            )
        except TimeoutError:
            errs.add("bg.create", "create phase timed out")
            created = []
        created = [x for x in created if x]
        t_created = time.perf_counter()
        try:
            await asyncio.wait_for(
                asyncio.gather(*[join(t, r) for t, r in created]), timeout=args.phase_max_s
            )
        except TimeoutError:
            errs.add("bg.join", "join phase timed out")
        t_end = time.perf_counter()
        out.update(
            {
                "created": len(created),
                "ok": ok,
                "create_phase_s": round(t_created - t_start, 3),
                "total_s": round(t_end - t_start, 3),
                "runs_per_s": round(ok / (t_end - t_start), 2) if ok else 0.0,
            }
        )
    finally:
        await close_client(c)
    return out


async def phase_interrupt(args, errs: Errors) -> dict:
    c = make_client(args.url, args.request_timeout)
    first, resume, rt = [], [], []
    via_state = 0
    deadline = time.monotonic() + args.phase_max_s

    async def one(record: bool) -> None:
        nonlocal via_state
        t, ans = tok(), tok()
        tid = (await c.threads.create())["thread_id"]
        t0 = time.perf_counter()
        r1 = await c.runs.wait(tid, args.interrupt_assistant, input={"items": [t]})
        t1 = time.perf_counter()
        v1 = _values(r1)
        intr = v1.get("__interrupt__")
        if intr:
            vals = [i.get("value") for i in intr if isinstance(i, dict)]
            if {"question": t} not in vals:
                raise RuntimeError(f"unexpected interrupt payload: {intr!r:.200}")
        else:  # server does not surface interrupts in wait output: ask state
            st = await c.threads.get_state(tid)
            ints = [i for task in st.get("tasks", []) for i in task.get("interrupts", [])]
            if not any(i.get("value") == {"question": t} for i in ints):
                raise RuntimeError(f"run did not interrupt: {v1!r:.200}")
            via_state += 1
        if v1.get("items") != [t]:
            raise RuntimeError(f"pre-interrupt state mismatch: {v1.get('items')!r}")
        t2 = time.perf_counter()
        r2 = await c.runs.wait(tid, args.interrupt_assistant, command={"resume": ans})
        t3 = time.perf_counter()
        items = _values(r2).get("items")
        if items != [t, f"answer:{ans}"]:
            raise RuntimeError(f"resume output mismatch: {items!r:.200}")
        if record:
            first.append(t1 - t0)
            resume.append(t3 - t2)
            rt.append((t1 - t0) + (t3 - t2))

    try:
        for _ in range(min(args.warmup, 5)):
            try:
                await one(False)
            except Exception as e:  # noqa: BLE001
                errs.add("interrupt.warmup", repr(e))
        for _ in range(args.interrupt_n):
            if time.monotonic() > deadline:
                break
            try:
                await one(True)
            except Exception as e:  # noqa: BLE001
                errs.add("interrupt", repr(e))
    finally:
        await close_client(c)
    return {
        "first_leg": summarize_ms(first),
        "resume_leg": summarize_ms(resume),
        "round_trip": summarize_ms(rt),
        "interrupt_checked_via_state": via_state,
    }


async def server_info(args) -> Any:
    c = make_client(args.url, args.request_timeout)
    try:
        return await c.http.get("/info")
    except Exception as e:  # noqa: BLE001
        return {"unavailable": repr(e)[:200]}
    finally:
        await close_client(c)


PHASES = {
    "seq": phase_seq,
    "tp": phase_tp,
    "stream": phase_stream,
    "bg": phase_bg,
    "interrupt": phase_interrupt,
}


async def main_async(args) -> dict:
    errs = Errors()
    result: dict[str, Any] = {
        "label": args.label,
        "url": args.url,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "params": {
            k: getattr(args, k)
            for k in (
                "assistant", "chain_assistant", "interrupt_assistant", "warmup",
                "seq_n", "seq_variants", "concurrency", "tp_duration", "tp_max_runs", "stream_n",
                "bg_n", "bg_create_concurrency", "bg_join_concurrency", "interrupt_n",
                "phases", "cpu_groups",
            )
        },
        "server_info": await server_info(args),
        "results": {},
    }
    try:
        import importlib.metadata as md

        result["host"]["langgraph_sdk"] = md.version("langgraph-sdk")
    except Exception:  # noqa: BLE001
        pass
    t_all = time.monotonic()
    for name in args.phases:
        if time.monotonic() - t_all > args.max_total_s:
            errs.add(name, "skipped: --max-total-s exceeded")
            continue
        t0 = time.perf_counter()
        cpu0 = cpu_snapshot(args.cpu_groups)
        try:
            result["results"][name] = await PHASES[name](args, errs)
        except Exception as e:  # noqa: BLE001
            errs.add(name, f"phase crashed: {e!r}")
        result["results"].setdefault(name, {})["phase_wall_s"] = round(time.perf_counter() - t0, 2)
        result["results"][name]["phase_cpu_s"] = cpu_delta(cpu0, cpu_snapshot(args.cpu_groups))
    result["errors"] = {"total": errs.total(), "by_phase": dict(errs.counts), "samples": errs.samples}
    return result


# ------------------------------------------------------------------ output
def flat_metrics(res: dict) -> dict[str, float]:
    """Headline numbers, flattened, for tables and aggregation."""
    r = res.get("results", {})
    m: dict[str, float] = {}

    def put(key: str, v: Any) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m[key] = v

    seq = r.get("seq", {})
    for k in ("stateless", "thread_fresh", "thread_reused", "thread_create"):
        put(f"seq.{k}.p50_ms", seq.get(k, {}).get("p50_ms"))
        put(f"seq.{k}.p95_ms", seq.get(k, {}).get("p95_ms"))
    for k, v in r.get("tp", {}).items():
        if isinstance(v, dict):
            put(f"tp.{k}.runs_per_s", v.get("runs_per_s"))
            put(f"tp.{k}.p50_ms", v.get("iteration", {}).get("p50_ms"))
            put(f"tp.{k}.p95_ms", v.get("iteration", {}).get("p95_ms"))
            for g, ms in (v.get("cpu_ms_per_run") or {}).items():
                put(f"tp.{k}.cpu_ms_per_run.{g}", ms)
    st = r.get("stream", {})
    for k in ("first_event", "first_update", "total"):
        put(f"stream.{k}.p50_ms", st.get(k, {}).get("p50_ms"))
        put(f"stream.{k}.p95_ms", st.get(k, {}).get("p95_ms"))
    bg = r.get("bg", {})
    put("bg.total_s", bg.get("total_s"))
    put("bg.create_phase_s", bg.get("create_phase_s"))
    put("bg.runs_per_s", bg.get("runs_per_s"))
    it = r.get("interrupt", {})
    for k in ("first_leg", "resume_leg", "round_trip"):
        put(f"interrupt.{k}.p50_ms", it.get(k, {}).get("p50_ms"))
        put(f"interrupt.{k}.p95_ms", it.get(k, {}).get("p95_ms"))
    put("errors.total", res.get("errors", {}).get("total"))
    return m


def print_table(res: dict, fh=sys.stderr) -> None:
    m = flat_metrics(res)
    print(f"\n== {res.get('label') or res.get('url')}  ({res.get('url')})", file=fh)
    w = max((len(k) for k in m), default=10)
    for k, v in m.items():
        print(f"  {k:<{w}}  {v:>12.3f}", file=fh)
    if res.get("errors", {}).get("samples"):
        print("  error samples:", file=fh)
        for s in res["errors"]["samples"][:10]:
            print(f"    - {s}", file=fh)


def aggregate(paths: list[str]) -> None:
    """Group result lines by label; print median (min-max) per metric."""
    groups: dict[str, list[dict]] = {}
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    d = json.loads(line)
                    groups.setdefault(d.get("label") or d.get("url"), []).append(d)
    summary = {}
    for label, rows in groups.items():
        metrics: dict[str, list[float]] = {}
        for d in rows:
            for k, v in flat_metrics(d).items():
                metrics.setdefault(k, []).append(v)
        summary[label] = {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for k, v in metrics.items()
        }
        print(f"\n== {label}  ({len(rows)} repeat(s)): median (min-max)")
        w = max((len(k) for k in metrics), default=10)
        for k, v in summary[label].items():
            print(f"  {k:<{w}}  {v['median']:>10.2f}  ({v['min']:.2f}-{v['max']:.2f})")
    print(json.dumps(summary))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:2024", help="server base URL (loopback only)")
    p.add_argument("--label", default="", help="name of the server under test, stored in the JSON")
    p.add_argument("--assistant", default="echo", help="graph/assistant id of the echo graph")
    p.add_argument("--chain-assistant", default="chain10")
    p.add_argument("--interrupt-assistant", default="interrupt_once")
    p.add_argument("--phases", default="seq,tp,stream,bg,interrupt",
                   type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--warmup", type=int, default=10, help="unrecorded runs before seq/stream/interrupt")
    p.add_argument("--seq-n", type=int, default=100, help="runs per sequential variant")
    p.add_argument("--seq-variants", default="stateless,thread_fresh,thread_reused",
                   type=lambda s: [x for x in s.split(",") if x],
                   help="which sequential variants to run (comma-separated)")
    p.add_argument("--concurrency", default="1,8,32", type=lambda s: [int(x) for x in s.split(",") if x])
    p.add_argument("--tp-duration", type=float, default=10.0, help="seconds per concurrency level")
    p.add_argument("--tp-max-runs", type=int, default=5000, help="cap on runs per concurrency level")
    p.add_argument("--stream-n", type=int, default=50)
    p.add_argument("--bg-n", type=int, default=200)
    p.add_argument("--bg-create-concurrency", type=int, default=16)
    p.add_argument("--bg-join-concurrency", type=int, default=64)
    p.add_argument("--interrupt-n", type=int, default=50)
    p.add_argument("--request-timeout", type=float, default=60.0, help="per HTTP request, seconds")
    p.add_argument("--phase-max-s", type=float, default=180.0, help="time bound per phase")
    p.add_argument("--max-total-s", type=float, default=900.0, help="skip phases after this")
    p.add_argument("--cpu-pids", action="append", default=[], metavar="NAME=PID[,PID]",
                   help="account CPU of these processes and their descendants per phase and "
                        "per tp level (repeatable, e.g. server=123 postgres=456); the client's "
                        "own CPU is always reported. Linux /proc only.")
    p.add_argument("--json-out", default=None, help="also append the JSON line to this file")
    p.add_argument("--aggregate", nargs="+", default=None, metavar="JSONL",
                   help="aggregate result files instead of running")
    a = p.parse_args(argv)
    a.cpu_groups = {}
    for spec in a.cpu_pids:
        name, _, pids = spec.partition("=")
        try:
            a.cpu_groups[name] = [int(x) for x in pids.split(",") if x]
        except ValueError:
            p.error(f"bad --cpu-pids {spec!r}")
    bad_v = [x for x in a.seq_variants if x not in ("stateless", "thread_fresh", "thread_reused")]
    if bad_v:
        p.error(f"unknown --seq-variants {bad_v}")
    bad = [x for x in a.phases if x not in PHASES]
    if bad:
        p.error(f"unknown phase(s) {bad}; choose from {list(PHASES)}")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.aggregate:
        aggregate(args.aggregate)
        return 0
    res = asyncio.run(main_async(args))
    line = json.dumps(res, default=str)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")
    print_table(res)
    return 0 if res["errors"]["total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
