#!/usr/bin/env python3
"""In-process floor: the graphs from graphs.py run with no server at all.

Per-run microseconds (median, p95) of:
  echo      invoke / ainvoke with no checkpointer, with InMemorySaver (fresh
            thread each run), and with Postgres savers (sync PostgresSaver,
            AsyncPostgresSaver) when --pg-uri is given;
  chain10   astream(stream_mode="updates") with the same savers;
  interrupt ainvoke -> interrupt, then ainvoke(Command(resume=...)) on a saver.

This is the lower bound of what any server's per-run cost can be: everything
else a server adds (HTTP, JSON, run bookkeeping, queueing, streaming) is
overhead on top of it.  Every run's output is checked.

  python bench_floor.py [--n 2000] [--pg-uri postgresql://user@127.0.0.1:5432/db]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid

os.environ.setdefault("LANGSMITH_TRACING", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import graphs  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.types import Command  # noqa: E402


def stats_us(samples: list[float]) -> dict:
    us = sorted(x * 1e6 for x in samples)
    if not us:
        return {"n": 0}
    p95 = us[min(len(us) - 1, int(round(0.95 * (len(us) - 1))))]
    return {"n": len(us), "p50_us": round(statistics.median(us), 1), "p95_us": round(p95, 1),
            "min_us": round(us[0], 1)}


def tok() -> str:
    return uuid.uuid4().hex[:12]


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def run_sync(name: str, fn, n: int, warm: int, max_s: float) -> dict:
    for _ in range(warm):
        fn()
    lat: list[float] = []
    deadline = time.monotonic() + max_s
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return stats_us(lat)


async def run_async(fn, n: int, warm: int, max_s: float) -> dict:
    for _ in range(warm):
        await fn()
    lat: list[float] = []
    deadline = time.monotonic() + max_s
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        await fn()
        lat.append(time.perf_counter() - t0)
    return stats_us(lat)


def echo_sync(g, with_cfg: bool):
    def f():
        t = tok()
        out = g.invoke({"items": [t]}, cfg() if with_cfg else None)
        assert out["items"] == [t, f"echo:{t}"], out

    return f


def echo_async(g, with_cfg: bool):
    async def f():
        t = tok()
        out = await g.ainvoke({"items": [t]}, cfg() if with_cfg else None)
        assert out["items"] == [t, f"echo:{t}"], out

    return f


def chain_stream(g, with_cfg: bool):
    async def f():
        t = tok()
        nodes = []
        async for upd in g.astream({"items": [t]}, cfg() if with_cfg else None,
                                   stream_mode="updates"):
            nodes.extend(upd.keys())
        assert nodes == [f"n{i}" for i in range(10)], nodes

    return f


def interrupt_rt(g):
    async def f():
        t, a = tok(), tok()
        c = cfg()
        out = await g.ainvoke({"items": [t]}, c)
        assert out.get("__interrupt__"), out
        out = await g.ainvoke(Command(resume=a), c)
        assert out["items"] == [t, f"answer:{a}"], out

    return f


async def main_async(args) -> dict:
    res: dict = {}
    n, w, mx = args.n, args.warmup, args.max_s
    plain = {k: b().compile() for k, b in graphs.BUILDERS.items()}
    mem = {k: b().compile(checkpointer=InMemorySaver()) for k, b in graphs.BUILDERS.items()}

    res["echo.invoke.nocp"] = run_sync("", echo_sync(plain["echo"], False), n, w, mx)
    res["echo.ainvoke.nocp"] = await run_async(echo_async(plain["echo"], False), n, w, mx)
    res["echo.invoke.memory"] = run_sync("", echo_sync(mem["echo"], True), n, w, mx)
    res["echo.ainvoke.memory"] = await run_async(echo_async(mem["echo"], True), n, w, mx)
    res["chain10.astream.nocp"] = await run_async(chain_stream(plain["chain10"], False), n, w, mx)
    res["chain10.astream.memory"] = await run_async(chain_stream(mem["chain10"], True), n, w, mx)
    res["interrupt.rt.memory"] = await run_async(interrupt_rt(mem["interrupt_once"]), n, w, mx)

    if args.pg_uri:
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        npg = max(1, n // 4)
        with PostgresSaver.from_conn_string(args.pg_uri) as saver:
            saver.setup()
            g = graphs.build_echo().compile(checkpointer=saver)
            res["echo.invoke.postgres_sync"] = run_sync("", echo_sync(g, True), npg, w, mx)
        async with AsyncPostgresSaver.from_conn_string(args.pg_uri) as saver:
            await saver.setup()
            ga = {k: b().compile(checkpointer=saver) for k, b in graphs.BUILDERS.items()}
            res["echo.ainvoke.postgres_async"] = await run_async(echo_async(ga["echo"], True), npg, w, mx)
            res["chain10.astream.postgres_async"] = await run_async(
                chain_stream(ga["chain10"], True), npg, w, mx)
            res["interrupt.rt.postgres_async"] = await run_async(
                interrupt_rt(ga["interrupt_once"]), npg, w, mx)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="runs per in-memory variant (Postgres: n/4)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--max-s", type=float, default=60.0, help="time bound per variant")
    p.add_argument("--pg-uri", default=None)
    p.add_argument("--label", default="floor")
    p.add_argument("--json-out", default=None)
    a = p.parse_args()
    t0 = time.time()
    res = asyncio.run(main_async(a))
    import importlib.metadata as md

    line = json.dumps({"label": a.label, "langgraph": md.version("langgraph"),
                       "wall_s": round(time.time() - t0, 1), "results": res})
    print(line)
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(line + "\n")
    w = max(len(k) for k in res)
    for k, v in res.items():
        print(f"  {k:<{w}}  p50 {v.get('p50_us', 0):>10.1f} us   p95 {v.get('p95_us', 0):>10.1f} us  (n={v['n']})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
