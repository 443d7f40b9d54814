#!/usr/bin/env python3
"""Checkpointer micro-benchmark: per-step write cost of our ``DjangoCheckpointSaver`` against
``langgraph-checkpoint-postgres`` on the same Postgres.

    python bench/bench_checkpointer.py [--steps 100] [--threads 3] [--quick]

One "step" is what the Pregel loop writes for one super-step of a chat agent: the task's
writes (``put_writes``: the new message and a trigger channel), then the next checkpoint
(``put``) whose ``messages`` channel holds the whole, growing history (a new version of it,
so a new blob, at every step). Each saver writes ``--threads`` threads of ``--steps`` steps
into its own fresh database (ours: ``migrate``; theirs: ``setup()``), interleaved, after a
warm-up thread; every thread is read back and checked. Both the sync and the async API are
measured. Prints ms/step (mean, p50, p95) for each saver and the ratio ours ÷ theirs
(target ≤ 1.3×), and the client CPU per step (this process, every thread: Python, driver;
the server's share is not counted). The databases are dropped afterwards. The machine's
load moves single runs by ±15%: compare several runs, or raise ``--threads``.

Needs ``langgraph-checkpoint-postgres`` (pinned in ``requirements.txt``) in the same Python as
the project; Postgres at ``$AGENTSERVER_TEST_POSTGRES`` (default
postgresql://postgres@127.0.0.1:5432/postgres, trust auth).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGSMITH_TRACING", "false")

ADMIN_URL = os.environ.get("AGENTSERVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SUFFIX = uuid.uuid4().hex[:10]
OURS_DB, THEIRS_DB = f"agentserver_ckpt_ours_{SUFFIX}", f"agentserver_ckpt_pg_{SUFFIX}"
BASE = ADMIN_URL.rsplit("/", 1)[0]


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def setup_django() -> None:
    """Point Django at a fresh database and migrate it (before anything imports models)."""
    for key in [k for k in os.environ if k.startswith("AGENTSERVER_")]:
        os.environ.pop(key)
    os.environ["DJANGO_SETTINGS_MODULE"] = "agentserver.settings"
    os.environ["DATABASE_URL"] = f"{BASE}/{OURS_DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


# ------------------------------------------------------------------------------- workload
def make_message(i: int):
    from langchain_core.messages import AIMessage, HumanMessage

    text = f"message {i}: " + "lorem ipsum dolor sit amet " * 8  # ~230 characters
    cls = HumanMessage if i % 2 == 0 else AIMessage
    return cls(content=text, id=str(uuid.uuid4()))


class Steps:
    """Builds the checkpoints and writes of one thread, step by step, as Pregel would."""

    def __init__(self, saver: Any, thread_id: str) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        self.saver = saver
        self.config: dict = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.checkpoint: dict[str, Any] = dict(empty_checkpoint())
        self.messages: list = []

    def writes(self, i: int) -> tuple[list[tuple[str, Any]], str]:
        return [("messages", [make_message(i)]), ("branch:to:agent", None)], str(uuid.uuid4())

    def next_checkpoint(self, i: int, message: Any) -> tuple[dict, dict, dict]:
        from langgraph.checkpoint.base.id import uuid6

        prev = self.checkpoint
        self.messages = [*self.messages, message]
        versions = dict(prev["channel_versions"])
        new_versions = {}
        for channel in ("messages", "branch:to:agent"):
            new_versions[channel] = self.saver.get_next_version(versions.get(channel), None)
        versions.update(new_versions)
        checkpoint = {
            **prev,
            "id": str(uuid6(clock_seq=i)),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "channel_values": {"messages": self.messages, "branch:to:agent": None},
            "channel_versions": versions,
            "versions_seen": {"agent": dict(versions)},
            "updated_channels": ["messages", "branch:to:agent"],
        }
        self.checkpoint = checkpoint
        metadata_ = {"source": "loop", "step": i, "parents": {}}
        return checkpoint, metadata_, new_versions


# One step's (wall seconds, CPU seconds of this process).
Sample = tuple[float, float]


def run_thread_sync(saver: Any, steps: int) -> list[Sample]:
    st = Steps(saver, str(uuid.uuid4()))
    # The first checkpoint (input), as the loop writes before the first task runs.
    cp, md, nv = st.next_checkpoint(0, make_message(0))
    st.config = saver.put(st.config, cp, md, nv)
    lat = []
    for i in range(1, steps + 1):
        writes, task_id = st.writes(i)
        t0, c0 = time.perf_counter(), time.process_time()
        saver.put_writes(st.config, writes, task_id, "~__pregel_pull, agent")
        cp, md, nv = st.next_checkpoint(i, writes[0][1][0])
        st.config = saver.put(st.config, cp, md, nv)
        lat.append((time.perf_counter() - t0, time.process_time() - c0))
    check(
        saver.get_tuple(
            {"configurable": {"thread_id": st.config["configurable"]["thread_id"], "checkpoint_ns": ""}}
        ),
        st,
    )
    return lat


async def run_thread_async(saver: Any, steps: int) -> list[Sample]:
    st = Steps(saver, str(uuid.uuid4()))
    cp, md, nv = st.next_checkpoint(0, make_message(0))
    st.config = await saver.aput(st.config, cp, md, nv)
    lat = []
    for i in range(1, steps + 1):
        writes, task_id = st.writes(i)
        t0, c0 = time.perf_counter(), time.process_time()
        await saver.aput_writes(st.config, writes, task_id, "~__pregel_pull, agent")
        cp, md, nv = st.next_checkpoint(i, writes[0][1][0])
        st.config = await saver.aput(st.config, cp, md, nv)
        lat.append((time.perf_counter() - t0, time.process_time() - c0))
    check(
        await saver.aget_tuple(
            {"configurable": {"thread_id": st.config["configurable"]["thread_id"], "checkpoint_ns": ""}}
        ),
        st,
    )
    return lat


def check(tup: Any, st: Steps) -> None:
    if tup is None:
        raise RuntimeError("thread not found after writing it")
    got = tup.checkpoint["channel_values"].get("messages") or []
    if tup.checkpoint["id"] != st.checkpoint["id"] or [m.id for m in got] != [m.id for m in st.messages]:
        raise RuntimeError(
            f"read back {len(got)} messages at {tup.checkpoint['id']}, "
            f"wrote {len(st.messages)} at {st.checkpoint['id']}"
        )


# ----------------------------------------------------------------------------- measuring
def summary(lat: list[Sample]) -> dict[str, float]:
    ms = sorted(wall * 1000 for wall, _ in lat)
    return {
        "n": len(ms),
        "mean": statistics.fmean(ms),
        "p50": statistics.median(ms),
        "p95": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "cpu": statistics.fmean(cpu * 1000 for _, cpu in lat),
    }


def bench_sync(ours: Any, theirs: Any, steps: int, threads: int) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {"ours": [], "theirs": []}
    for saver in (ours, theirs):
        run_thread_sync(saver, min(steps, 10))  # warm-up: connections, statements, imports
    for _ in range(threads):
        for name, saver in (("ours", ours), ("theirs", theirs)):
            out[name] += run_thread_sync(saver, steps)
    return out


async def bench_async(ours: Any, theirs: Any, steps: int, threads: int) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {"ours": [], "theirs": []}
    for saver in (ours, theirs):
        await run_thread_async(saver, min(steps, 10))
    for _ in range(threads):
        for name, saver in (("ours", ours), ("theirs", theirs)):
            out[name] += await run_thread_async(saver, steps)
    return out


def report(title: str, res: dict[str, list[Sample]]) -> tuple[list[str], float]:
    o, t = summary(res["ours"]), summary(res["theirs"])
    ratio = o["mean"] / t["mean"]
    rows = [
        f"| {title}: DjangoCheckpointSaver | {o['mean']:.2f} | {o['p50']:.2f} | {o['p95']:.2f} "
        f"| {o['cpu']:.2f} | {o['n']} | |",
        f"| {title}: langgraph-checkpoint-postgres | {t['mean']:.2f} | {t['p50']:.2f} | {t['p95']:.2f} "
        f"| {t['cpu']:.2f} | {t['n']} | |",
        f"| {title}: ratio ours ÷ theirs (mean) | | | | | | **{ratio:.2f}×** "
        f"({'meets' if ratio <= 1.3 else 'misses'} ≤ 1.3×) |",
    ]
    return rows, ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="steps per thread (the history grows to this)")
    p.add_argument("--threads", type=int, default=3, help="threads per saver, interleaved")
    p.add_argument("--quick", action="store_true", help="20 steps x 1 thread (smoke)")
    p.add_argument("--no-async", action="store_true", help="only the sync API")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.threads = 20, 1
    if importlib.util.find_spec("langgraph.checkpoint.postgres") is None:
        print("needs the saver it compares against: pip install langgraph-checkpoint-postgres==3.2.0", file=sys.stderr)
        return 2

    admin(f'CREATE DATABASE "{OURS_DB}"')
    admin(f'CREATE DATABASE "{THEIRS_DB}"')
    try:
        setup_django()
        from django.db import connections
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        from threads.checkpointer import DjangoCheckpointSaver

        ours = DjangoCheckpointSaver()
        theirs_url = f"{BASE}/{THEIRS_DB}"
        rows: list[str] = []
        with PostgresSaver.from_conn_string(theirs_url) as theirs:
            theirs.setup()
            r, _ = report("sync", bench_sync(ours, theirs, args.steps, args.threads))
            rows += r

        if not args.no_async:

            async def run_async() -> dict[str, list[Sample]]:
                async with AsyncPostgresSaver.from_conn_string(theirs_url) as atheirs:
                    return await bench_async(ours, atheirs, args.steps, args.threads)

            r, _ = report("async", asyncio.run(run_async()))
            rows += r
        connections.close_all()

        print(
            f"Per-step checkpoint write cost (put_writes + put), {args.threads} thread(s) x {args.steps} "
            f"steps per saver, growing message history; ms per step"
        )
        print()
        print("| saver | mean | p50 | p95 | client cpu | steps | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        print("\n".join(rows))
        print()
        versions = {
            pkg: metadata.version(pkg)
            for pkg in (
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-postgres",
                "psycopg",
                "django",
            )
        }
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return 0
    finally:
        admin(f'DROP DATABASE IF EXISTS "{OURS_DB}" WITH (FORCE)')
        admin(f'DROP DATABASE IF EXISTS "{THEIRS_DB}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
