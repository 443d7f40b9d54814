#!/usr/bin/env python3
"""Scale figures (issue 5, item 2): do reads and run admission stay as fast on a full database?

    python bench/bench_scale.py                       # 10,000 threads x 20 checkpoints, ~5-10 min
    python bench/bench_scale.py --threads 2000 --checkpoints 20
    python bench/bench_scale.py --quick               # ~200 threads, ~1-2 min smoke run

Starts our production setup (``tests.live.LiveServer`` mode="prod": uvicorn + one Celery worker
``-P threads -c 16``) on a fresh Postgres database, which is dropped afterwards, and:

1. builds a *template* thread with real runs of the ``echo`` graph (``ceil(M / 3)`` runs, three
   checkpoints each), so its checkpoint, blob, write, run and thread rows are the server's own;
2. "empty" database: bulk-copies the template (SQL, ``INSERT ... SELECT``) into ``S`` measurement
   threads and times, p50/p95, with the unmodified ``langgraph-sdk``:
   ``threads.get_state``, ``threads.get_history(limit=10)``, ``threads.search(limit=10)``, the same
   with a metadata filter, and run admission (``runs.create`` on an idle thread; then ``runs.join``);
3. seeds the database to ``--threads`` threads of ``--checkpoints`` checkpoints each by the same
   copy (new thread ids; run ids rewritten in runs, checkpoint metadata and run kwargs, so
   ``checkpoint_run_idx`` and ``run_thread_idx`` see realistic, distinct keys), ``VACUUM ANALYZE``
   (what autovacuum would soon do), and times the same figures again on seeded threads;
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements behind each endpoint, captured from the server's
   own code (``threads.services``, ``threads.state``, ``runs.services.create_run``,
   ``runs.executor.claim_run``) with a Django execute wrapper in a child process and replayed on the
   seeded database in a rolled-back transaction; prints each plan's key lines (nodes, index
   conditions, filters, execution time);
5. 1,000 background runs at once on seeded threads (``runs.create`` with bounded client
   concurrency, then ``runs.join`` on all): total time, runs/s and errors.

Every response is checked (values of copied threads equal the template's; each run's output is
the thread's history plus this run's items), errors are counted and printed, every loop is bounded
in count and time. Exit status 1 when a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from common import Errors, on_prod_server, tagged_log  # noqa: E402

GRAPH = "echo"
CHECKPOINTS_PER_RUN = 3  # echo: input (-1), loop (0), after the node (1)
USERS = 100  # metadata {"user": "u<n % 100>"}: a filter matches 1 % of the threads
EMPTY_USERS = 5  # the measurement threads of the empty database: u0..u4
# Copy tables, children first: (table, template filter column, kept checkpoints only?)
SEED_BATCH = 500


log = tagged_log("scale")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(samples: list[float], p: float) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ------------------------------------------------------------------------------ seeding
class Seeder:
    """Copies a template thread's rows under new thread (and run) ids with INSERT ... SELECT."""

    def __init__(self, db_url: str, template: str, checkpoints: int) -> None:
        import psycopg

        self.conn = psycopg.connect(db_url, autocommit=True)
        self.template = template
        self.columns = {
            t: [r[0] for r in self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY ordinal_position", (t,)).fetchall()]
            for t in ("threads_thread", "runs_run", "threads_checkpoint", "threads_checkpointblob",
                      "threads_checkpointwrite")
        }
        ids = [r[0] for r in self.conn.execute(
            "SELECT checkpoint_id FROM threads_checkpoint WHERE thread_id = %s AND checkpoint_ns = '' "
            "ORDER BY checkpoint_id DESC", (template,)).fetchall()]
        if len(ids) < checkpoints:
            raise RuntimeError(f"template has {len(ids)} checkpoints, fewer than {checkpoints}")
        self.kept = ids[:checkpoints]  # the newest M; the oldest kept one loses its parent
        self.oldest = self.kept[-1]
        self.conn.execute("CREATE TEMP TABLE seed_t (n int PRIMARY KEY, tid uuid NOT NULL, tid_text text NOT NULL)")
        self.conn.execute("CREATE TEMP TABLE seed_r (n int NOT NULL, old_run text NOT NULL, new_run uuid NOT NULL,"
                          " PRIMARY KEY (n, old_run))")

    def _insert(self, table: str, overrides: dict[str, str], source: str, params: dict) -> int:
        cols = [c for c in self.columns[table] if c != "id"]  # checkpoint tables: serial id
        exprs = [overrides.get(c, f'src."{c}"') for c in cols]
        quoted = ", ".join(f'"{c}"' for c in cols)  # "values" is a keyword
        sql = f"INSERT INTO {table} ({quoted}) SELECT {', '.join(exprs)} {source}"
        return self.conn.execute(sql, params).rowcount

    def copy(self, numbers: list[int], users: int = USERS) -> list[str]:
        """New threads numbered ``numbers`` (their metadata user is u<n % users>); returns their ids."""
        tids = [str(uuid.uuid4()) for _ in numbers]
        p = {"tpl": self.template, "kept": self.kept, "oldest": self.oldest, "users": users}
        with self.conn.transaction():
            self.conn.execute("TRUNCATE seed_t, seed_r")
            self.conn.execute("INSERT INTO seed_t SELECT n, t, t::text FROM unnest(%s::int[], %s::uuid[]) AS u(n, t)",
                              (numbers, tids))
            self.conn.execute(
                "INSERT INTO seed_r SELECT t.n, r.run_id::text, gen_random_uuid() FROM seed_t t "
                "CROSS JOIN runs_run r WHERE r.thread_id = %(tpl)s::uuid", p)
            # Threads: spread over time (n-th is n x 30 s older), one user in 100.
            self._insert("threads_thread", {
                "thread_id": "t.tid",
                "created_at": "now() - make_interval(secs => t.n * 30 + 20)",
                "updated_at": "now() - make_interval(secs => t.n * 30)",
                "state_updated_at": "now() - make_interval(secs => t.n * 30)",
                "metadata": "src.metadata || jsonb_build_object('user', 'u' || mod(t.n, %(users)s))",
            }, "FROM seed_t t CROSS JOIN threads_thread src WHERE src.thread_id = %(tpl)s::uuid", p)
            configurable = "'{config,configurable,%s}'"
            self._insert("runs_run", {
                "run_id": "r.new_run",
                "thread_id": "t.tid",
                "kwargs": (f"jsonb_set(jsonb_set(src.kwargs, {configurable % 'run_id'}, to_jsonb(r.new_run::text), "
                           f"false), {configurable % 'thread_id'}, to_jsonb(t.tid_text), false)"),
                "lease_token": "gen_random_uuid()",
                "created_at": "src.created_at - make_interval(secs => t.n * 30)",
                "updated_at": "src.updated_at - make_interval(secs => t.n * 30)",
                "started_at": "src.started_at - make_interval(secs => t.n * 30)",
                "ended_at": "src.ended_at - make_interval(secs => t.n * 30)",
            }, "FROM seed_t t JOIN seed_r r ON r.n = t.n JOIN runs_run src ON src.run_id::text = r.old_run", p)
            self._insert("threads_checkpoint", {
                "thread_id": "t.tid_text",
                "parent_checkpoint_id": "CASE WHEN src.checkpoint_id = %(oldest)s THEN NULL "
                                        "ELSE src.parent_checkpoint_id END",
                "metadata": ("CASE WHEN r.new_run IS NULL THEN src.metadata ELSE "
                             "jsonb_set(src.metadata, '{run_id}', to_jsonb(r.new_run::text)) END"),
                "created_at": "src.created_at - make_interval(secs => t.n * 30)",
            }, "FROM seed_t t CROSS JOIN threads_checkpoint src "
               "LEFT JOIN seed_r r ON r.n = t.n AND r.old_run = src.metadata ->> 'run_id' "
               "WHERE src.thread_id = %(tpl)s AND src.checkpoint_id = ANY(%(kept)s)", p)
            self._insert("threads_checkpointblob", {"thread_id": "t.tid_text"},
                         "FROM seed_t t CROSS JOIN threads_checkpointblob src WHERE src.thread_id = %(tpl)s", p)
            self._insert("threads_checkpointwrite", {"thread_id": "t.tid_text"},
                         "FROM seed_t t CROSS JOIN threads_checkpointwrite src "
                         "WHERE src.thread_id = %(tpl)s AND src.checkpoint_id = ANY(%(kept)s)", p)
        return tids

    def vacuum_analyze(self) -> None:
        for t in self.columns:
            self.conn.execute(f"VACUUM (ANALYZE) {t}")

    def counts(self) -> dict[str, int]:
        return {t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in self.columns}

    def db_size(self) -> str:
        return self.conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------- measuring
def make_client(url: str, timeout: float):
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=None, timeout=timeout)


async def timed_loop(name: str, n: int, warmup: int, fn, errs: Errors, max_s: float) -> list[float]:
    """Call ``await fn(i)`` warmup + n times, sequentially; the last n timed (seconds)."""
    out: list[float] = []
    deadline = time.monotonic() + max_s
    for i in range(warmup + n):
        if time.monotonic() > deadline:
            errs.add(name, f"time bound {max_s:.0f}s hit after {i} calls")
            break
        t0 = time.perf_counter()
        try:
            await fn(i)
        except Exception as e:  # noqa: BLE001
            errs.add(name, repr(e))
            continue
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def check_items(values: Any, want: list[str], what: str) -> None:
    items = values.get("items") if isinstance(values, dict) else None
    if items != want:
        raise RuntimeError(f"{what}: items {items!r:.160} != {want!r:.160}")


async def measure(c, phase: str, read_tids: list[str], admit_tids: list[str], users: list[str],
                  want: list[str], args, errs: Errors) -> dict[str, list[float]]:
    """The figures on one database state; read threads are picked at random per request."""
    rnd = random.Random(7)
    n, w, max_s = args.n, args.warmup, args.phase_max_s
    res: dict[str, list[float]] = {}

    async def get_state(i: int) -> None:
        st = await c.threads.get_state(rnd.choice(read_tids))
        check_items(st["values"], want, "get_state")

    async def get_history(i: int) -> None:
        hist = await c.threads.get_history(rnd.choice(read_tids), limit=10)
        if len(hist) != 10:
            raise RuntimeError(f"get_history: {len(hist)} states, not 10")
        check_items(hist[0]["values"], want, "get_history[0]")

    async def search(i: int) -> None:
        found = await c.threads.search(limit=10)
        if len(found) != 10:
            raise RuntimeError(f"search: {len(found)} threads, not 10")

    async def search_meta(i: int) -> None:
        user = users[i % len(users)]
        found = await c.threads.search(metadata={"user": user}, limit=10)
        if not found or any(t["metadata"].get("user") != user for t in found):
            raise RuntimeError(f"search(metadata user={user}): {len(found)} threads / wrong ones")

    res["get_state"] = await timed_loop(f"{phase}.get_state", n, w, get_state, errs, max_s)
    res["get_history"] = await timed_loop(f"{phase}.get_history", n, w, get_history, errs, max_s)
    res["search"] = await timed_loop(f"{phase}.search", n, w, search, errs, max_s)
    res["search_meta"] = await timed_loop(f"{phase}.search_meta", n, w, search_meta, errs, max_s)

    # Admission: runs.create on an idle thread (each thread used once), then join.
    create_s: list[float] = []
    total_s: list[float] = []
    deadline = time.monotonic() + max_s
    for i, tid in enumerate(admit_tids):
        if time.monotonic() > deadline:
            errs.add(f"{phase}.admission", "time bound hit")
            break
        token = uuid.uuid4().hex[:10]
        try:
            t0 = time.perf_counter()
            run = await c.runs.create(tid, GRAPH, input={"items": [token]})
            t1 = time.perf_counter()
            out = await c.runs.join(tid, run["run_id"])
            t2 = time.perf_counter()
            if isinstance(out, dict) and "__error__" in out:
                raise RuntimeError(f"run error {out['__error__']}")
            check_items(out, [*want, token, f"echo:{token}"], "admission join")
        except Exception as e:  # noqa: BLE001
            errs.add(f"{phase}.admission", repr(e))
            continue
        if i >= min(w, len(admit_tids) // 5):
            create_s.append(t1 - t0)
            total_s.append(t2 - t0)
    res["admit_create"] = create_s
    res["admit_total"] = total_s
    return res


async def background_runs(url: str, tids: list[str], want: list[str], args, errs: Errors) -> dict:
    """runs.create on every thread (bounded concurrency), then runs.join on all."""
    c = make_client(url, args.request_timeout)
    tokens = {tid: uuid.uuid4().hex[:10] for tid in tids}
    csem, jsem = asyncio.Semaphore(args.bg_create_concurrency), asyncio.Semaphore(args.bg_join_concurrency)
    ok = 0

    async def create(tid: str):
        async with csem:
            try:
                return tid, (await c.runs.create(tid, GRAPH, input={"items": [tokens[tid]]}))["run_id"]
            except Exception as e:  # noqa: BLE001
                errs.add("bg.create", repr(e))
                return None

    async def join(tid: str, rid: str) -> None:
        nonlocal ok
        async with jsem:
            try:
                out = await c.runs.join(tid, rid)
                check_items(out, [*want, tokens[tid], f"echo:{tokens[tid]}"], "bg join")
                ok += 1
            except Exception as e:  # noqa: BLE001
                errs.add("bg.join", repr(e))

    try:
        t0 = time.perf_counter()
        try:
            created = await asyncio.wait_for(asyncio.gather(*[create(t) for t in tids]), args.phase_max_s)
        except TimeoutError:
            errs.add("bg.create", "create phase timed out")
            created = []
        created = [x for x in created if x]
        t1 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*[join(t, r) for t, r in created]), args.phase_max_s)
        except TimeoutError:
            errs.add("bg.join", "join phase timed out")
        t2 = time.perf_counter()
    finally:
        await c.http.client.aclose()
    return {"n": len(tids), "created": len(created), "ok": ok, "create_s": round(t1 - t0, 2),
            "total_s": round(t2 - t0, 2), "runs_per_s": round(ok / (t2 - t0), 1) if ok else 0.0}


# -------------------------------------------------------------------------------- EXPLAIN
def explain_child(spec: dict) -> None:
    """In a child process with the server's environment: run the server's own code paths behind
    each endpoint, capture their SQL, and EXPLAIN (ANALYZE, BUFFERS) it on the same database."""
    import django

    django.setup()
    from django.db import connection, transaction

    from agentserver.validation import validated
    from runs.executor import claim_run
    from runs.queue import next_queued_run
    from runs.serializers.runs import ThreadRunCreateSerializer
    from runs.services import create_run
    from threads import services, state

    captured: list[tuple[str, str, Any]] = []
    label = [""]

    def wrapper(execute, sql, params, many, context):
        captured.append((label[0], sql, params[0] if many and params else params))
        return execute(sql, params, many, context)

    class Rollback(Exception):
        pass

    def admission() -> None:
        try:
            with transaction.atomic():
                data = validated(ThreadRunCreateSerializer, {"assistant_id": GRAPH, "input": {"items": ["x"]}})
                run = create_run(data, thread_id=uuid.UUID(spec["admit_thread"]), headers={})
                label[0] = "worker: claim_run + next_queued_run"
                claim_run(str(run.run_id))
                next_queued_run(run.thread_id)
                raise Rollback
        except Rollback:
            pass

    tid = spec["read_thread"]
    steps = [
        ("get_state", lambda: state.get_state(services.get_thread(tid))),
        ("get_history(limit=10)", lambda: state.get_history(services.get_thread(tid), limit=10)),
        ("search(limit=10)", lambda: services.search_threads(limit=10)),
        ("search(limit=10, metadata)", lambda: services.search_threads(limit=10, metadata={"user": spec["user"]})),
        ("runs.create (admission)", admission),
    ]
    with connection.execute_wrapper(wrapper):
        for name, fn in steps:
            label[0] = name
            fn()

    replay(os.environ["DATABASE_URL"], captured, spec)


# Indexes that would bound the statements the seeded run shows unbounded; tried (created, the
# statements EXPLAINed again, rolled back) after the plans. The Django spelling is what to add.
# None outstanding: the last ones (thread search, metadata GIN, active runs per thread) are
# threads/runs migrations 0003.
CANDIDATE_INDEXES: list[tuple[str, str]] = []
SKIP_SQL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK", "BEGIN", "COMMIT", "SET ")


def replay(url: str, captured: list[tuple[str, str, Any]], spec: dict) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) each captured statement, in one transaction rolled back at the end
    (EXPLAIN ANALYZE executes the admission's INSERT and UPDATEs); then again with a backlog of
    pending runs, and with the candidate indexes."""
    import psycopg

    quiet = spec.get("quiet", False)
    sql_ms: dict[str, float] = {}

    def say(text: str) -> None:
        if not quiet:
            print(text)

    def explain(cur, sql: str, params: Any, label: str | None = None) -> None:
        """Print the plan's key lines; add its execution time (median of 3 for a SELECT) to
        ``sql_ms[label]``."""
        short = " ".join(sql.split())
        say(f"  SQL: {short[:200]}{' ...' if len(short) > 200 else ''}")
        times, lines = [], []
        for _ in range(3 if sql.lstrip().upper().startswith("SELECT") else 1):
            try:
                cur.execute("SAVEPOINT e")
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                lines = [r[0] for r in cur.fetchall()]
                cur.execute("RELEASE SAVEPOINT e")
            except Exception as e:  # noqa: BLE001
                cur.execute("ROLLBACK TO SAVEPOINT e")
                say(f"    (EXPLAIN failed: {e!r:.200})")
                return
            times += [float(ln.split(":")[1].split()[0]) for ln in lines if ln.startswith("Execution Time")]
        if label is not None and times:
            sql_ms[label] = sql_ms.get(label, 0.0) + statistics.median(times)
        for line in key_plan_lines(lines):
            say(f"    {line}")

    def statements(labels: tuple[str, ...] = ("",), table: str = "") -> list[tuple[str, str, Any]]:
        out, seen = [], set()
        for name, sql, params in captured:
            if (sql.lstrip().upper().startswith(SKIP_SQL) or (name, sql) in seen
                    or not name.startswith(labels) or table not in sql.lower()):
                continue
            seen.add((name, sql))
            out.append((name, sql, params))
        return out

    with psycopg.connect(url) as conn:
        cur = psycopg.ClientCursor(conn)  # parameters inlined: the plan for these very values
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred FK events: CREATE INDEX below
        cur.execute("SAVEPOINT clean")
        current = None
        for name, sql, params in statements():
            if name != current:
                say(f"\n### {name}")
                current = name
            explain(cur, sql, params, label=name)
        cur.execute("ROLLBACK TO SAVEPOINT clean")  # the admitted run is gone again
        print("SQL_MS " + json.dumps(sql_ms))

        # The admission and the worker's claim again while a backlog of runs is pending on other
        # threads (as during the 1,000 background runs): first with the statistics as they
        # are (autovacuum analyzes runs_run only after ~10 % of it changed), then after ANALYZE,
        # then with the candidate indexes.
        backlog = spec.get("backlog", 0)
        run_statements = statements(("runs.create", "worker"), "runs_run")

        def replay_runs(title: str) -> None:
            print(f"\n### {title}")
            cur.execute("SAVEPOINT runs")
            for _, sql, params in run_statements:  # the INSERT too: the claim needs its run
                if sql.lstrip().upper().startswith("INSERT"):
                    cur.execute(sql, params)
                else:
                    explain(cur, sql, params)
            cur.execute("ROLLBACK TO SAVEPOINT runs")

        if backlog:
            cols = [r[0] for r in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = 'runs_run' ORDER BY ordinal_position").fetchall()]
            over = {"run_id": "gen_random_uuid()", "status": "'pending'", "created_at": "now()",
                    "started_at": "NULL", "ended_at": "NULL", "attempt": "0", "lease_token": "NULL",
                    "lease_expires_at": "NULL", "output": "NULL"}
            quoted = ", ".join(f'"{c}"' for c in cols)
            exprs = ", ".join(over.get(c, f'src."{c}"') for c in cols)
            cur.execute(
                f"INSERT INTO runs_run ({quoted}) SELECT {exprs} "
                "FROM (SELECT DISTINCT ON (thread_id) * FROM runs_run WHERE thread_id <> %s::uuid "
                "ORDER BY thread_id, created_at DESC LIMIT %s) src", (spec["admit_thread"], backlog))
            added = cur.rowcount
            replay_runs(f"admission and claim with {added:,} other runs pending (statistics not yet updated)")
            cur.execute("ANALYZE runs_run")
            replay_runs(f"admission and claim with {added:,} other runs pending, after ANALYZE runs_run")

        if spec.get("candidates") and CANDIDATE_INDEXES:
            print("\n### with the candidate indexes (created in this transaction, rolled back):")
            for django_form, ddl in CANDIDATE_INDEXES:
                cur.execute(ddl)
                print(f"  + {django_form}")
            for _, sql, params in statements(("search",)):
                explain(cur, sql, params)
            if backlog:
                replay_runs("admission and claim with the backlog and the candidate indexes")
        conn.rollback()


def key_plan_lines(lines: list[str]) -> list[str]:
    import re

    keep = []
    for ln in lines:
        s = ln.strip()
        if ("->" in s or ln is lines[0] or s.startswith(("Index Cond", "Filter", "Rows Removed", "Recheck Cond",
                                                           "Sort Key", "Execution Time", "Join Filter",
                                                           "Sort Method", "SubPlan", "InitPlan"))):
            s = re.sub(r"\(cost=[^)]*\) ", "", ln.rstrip())
            s = re.sub(r" loops=1\)", ")", s)
            keep.append(s[:200])
    return keep[:18]


def run_explain(env: dict[str, str], spec: dict) -> tuple[str, dict[str, float]]:
    """The child's printed plans, and the SQL time (ms) of each endpoint's statements."""
    proc = subprocess.run([sys.executable, __file__, "--explain-child", json.dumps(spec)], cwd=ROOT,
                          env={**env, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=180)
    lines = proc.stdout.splitlines()
    sql_ms = next((json.loads(ln[7:]) for ln in lines if ln.startswith("SQL_MS ")), {})
    text = "\n".join(ln for ln in lines if not ln.startswith("SQL_MS "))
    if proc.returncode:
        text += f"\n(EXPLAIN child failed, exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return text, sql_ms


# ---------------------------------------------------------------------------------- table
FIGURES = [
    ("get_state", "`threads.get_state`"),
    ("get_history", "`threads.get_history(limit=10)`"),
    ("search", "`threads.search(limit=10)`"),
    ("search_meta", "`threads.search(metadata={user}, limit=10)`"),
    ("admit_create", "run admission: `runs.create` on an idle thread"),
    ("admit_total", "`runs.create` + `runs.join` (echo)"),
]


# The captured statements behind each figure (labels of explain_child).
FIGURE_SQL = {
    "get_state": ["get_state"],
    "get_history": ["get_history(limit=10)"],
    "search": ["search(limit=10)"],
    "search_meta": ["search(limit=10, metadata)"],
    "admit_create": ["runs.create (admission)"],
    "admit_total": ["runs.create (admission)", "worker: claim_run + next_queued_run"],
}


def table(empty: dict[str, list[float]], seeded: dict[str, list[float]], sql_empty: dict[str, float],
          sql_seeded: dict[str, float], n_seeded: int, m: int) -> str:
    def cell(s: list[float]) -> str:
        if not s:
            return "–"
        return f"{pct(s, 50) * 1000:.1f} / {pct(s, 95) * 1000:.1f}"

    def sql(d: dict[str, float], key: str) -> float | None:
        parts = [d[label] for label in FIGURE_SQL[key] if label in d]
        return sum(parts) if parts else None

    rows = [f"| figure | HTTP ms p50 / p95, empty DB | seeded DB ({n_seeded:,} threads x {m} checkpoints) "
            "| ratio p50 (p95) | SQL ms (EXPLAIN ANALYZE), empty -> seeded | degrades? |",
            "| --- | ---: | ---: | ---: | ---: | :---: |"]
    for key, title in FIGURES:
        a, b = empty.get(key, []), seeded.get(key, [])
        why = []
        if a and b:
            r50, r95 = pct(b, 50) / pct(a, 50), pct(b, 95) / pct(a, 95)
            ratio = f"{r50:.2f}x ({r95:.2f}x)"
            if r50 > 1.3 and (pct(b, 50) - pct(a, 50)) > 0.001:
                why.append("HTTP")
        else:
            ratio = "–"
        se, ss = sql(sql_empty, key), sql(sql_seeded, key)
        if se is not None and ss is not None:
            sql_cell = f"{se:.2f} -> {ss:.2f}"
            if ss - se > 0.5 and ss > 2 * se:
                why.append("SQL")
        else:
            sql_cell = "–"
        # HTTP latency on a shared machine drifts by tens of percent between phases; the
        # SQL time is the steady signal, so HTTP alone only raises a question.
        flag = "**yes** (SQL)" if "SQL" in why else ("HTTP only: noise?" if why else "no")
        rows.append(f"| {title} | {cell(a)} | {cell(b)} | {ratio} | {sql_cell} | {flag} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------- main
async def build_template(c, runs: int, errs: Errors) -> tuple[str, list[str]]:
    thread = await c.threads.create(metadata={"user": "template"})
    tid = thread["thread_id"]
    want: list[str] = []
    for i in range(runs):
        token = f"s{i}"
        out = await c.runs.wait(tid, GRAPH, input={"items": [token]})
        want += [token, f"echo:{token}"]
        check_items(out, want, "template run")
    return tid, want


async def verify_copies(c, tids: list[str], want: list[str], m: int) -> None:
    for tid in tids:
        th = await c.threads.get(tid)
        if th["status"] != "idle":
            raise RuntimeError(f"copied thread {tid} status {th['status']}")
        check_items(th["values"], want, "copied thread values")
        st = await c.threads.get_state(tid)
        check_items(st["values"], want, "copied thread state")
        hist = await c.threads.get_history(tid, limit=m + 5)
        if len(hist) != m:
            raise RuntimeError(f"copied thread {tid}: {len(hist)} states in history, not {m}")


async def main_async(args, server) -> int:
    errs = Errors()
    c = make_client(server.url, args.request_timeout)
    m = args.checkpoints
    runs = math.ceil(m / CHECKPOINTS_PER_RUN)
    t0 = time.monotonic()
    try:
        template, want = await asyncio.wait_for(build_template(c, runs, errs), 120)
    except TimeoutError:
        raise RuntimeError("template runs did not finish within 120s (worker down? its Redis database "
                           "flushed by another session?)") from None
    log(f"template thread {template}: {runs} real runs of {GRAPH} ({runs * CHECKPOINTS_PER_RUN} checkpoints, "
        f"keeping the newest {m}) in {time.monotonic() - t0:.1f}s")

    seeder = Seeder(server.database_url, template, m)
    results: dict[str, Any] = {"threads": args.threads, "checkpoints": m}
    try:
        # Phase 1: the "empty" database: the template and S measurement threads.
        n_read, n_admit = 10, args.admissions
        s = n_read + n_admit
        # Their users are u0..u4 (12 threads each), so the metadata search returns a full page of
        # 10 on the empty database too; on the seeded one each of them has ~100 more threads.
        first = seeder.copy(list(range(1, s + 2)), users=EMPTY_USERS)
        read_tids, admit_tids, spare = first[:n_read], first[n_read:s], first[s]
        seeder.vacuum_analyze()
        await verify_copies(c, read_tids[:3], want, m)
        users = [f"u{k}" for k in range(EMPTY_USERS)]
        log(f"empty DB ({s + 1} copied threads + template): measuring; load {loadavg()}")
        empty = await measure(c, "empty", read_tids, admit_tids, users, want, args, errs)
        sql_empty: dict[str, float] = {}
        if not args.no_explain:
            _, sql_empty = run_explain(server.env(), {"read_thread": read_tids[0], "admit_thread": spare,
                                                      "user": "u3", "quiet": True})

        # Phase 2: seed to --threads in all.
        t0 = time.monotonic()
        total = max(args.threads, s + 1 + n_admit + args.bg_runs + 1 + 20)
        seeded: list[str] = []
        deadline = time.monotonic() + args.seed_max_s
        for start in range(s + 2, total + 1, SEED_BATCH):
            if time.monotonic() > deadline:
                log(f"seeding stopped by --seed-max-s after {len(seeded) + s + 1:,} threads")
                break
            seeded += seeder.copy(list(range(start, min(start + SEED_BATCH, total + 1))))
            if len(seeded) % 2000 < SEED_BATCH:
                log(f"  seeded {len(seeded) + s + 1:,}/{total:,} threads ({time.monotonic() - t0:.0f}s)")
        seed_s = time.monotonic() - t0
        t1 = time.monotonic()
        seeder.vacuum_analyze()
        seeder.conn.execute("CHECKPOINT")  # flush the seed's dirty pages now, not while we measure
        counts = seeder.counts()
        n_threads = counts["threads_thread"]
        log(f"seeded in {seed_s:.0f}s, VACUUM ANALYZE {time.monotonic() - t1:.0f}s; rows: {counts}; "
            f"database {seeder.db_size()}")
        results.update(seed_s=round(seed_s, 1), rows=counts, db_size=seeder.db_size())
        rnd = random.Random(11)
        rnd.shuffle(seeded)
        # Disjoint pools: admission threads, background-run threads, one for the EXPLAIN's
        # admission, and read-only threads (their values must stay the template's).
        s_admit, bg_tids = seeded[:n_admit], seeded[n_admit:n_admit + args.bg_runs]
        explain_admit = seeded[n_admit + args.bg_runs]
        s_read = seeded[n_admit + args.bg_runs + 1:][:200]
        await verify_copies(c, s_read[:3], want, m)
        log(f"seeded DB ({n_threads:,} threads): measuring; load {loadavg()}")
        seeded_res = await measure(c, "seeded", s_read, s_admit, users, want, args, errs)

        plans, sql_seeded = "", {}
        if not args.no_explain:
            log("EXPLAIN (ANALYZE) of the statements behind each endpoint")
            spec = {"read_thread": s_read[0], "admit_thread": explain_admit, "user": "u3",
                    "backlog": args.bg_runs, "candidates": not args.no_candidates}
            plans, sql_seeded = run_explain(server.env(), spec)
        print()
        print(table(empty, seeded_res, sql_empty, sql_seeded, n_threads, m))
        results["sql_ms"] = {"empty": sql_empty, "seeded": sql_seeded}
        results["figures"] = {ph: {k: {"p50_ms": round(pct(v, 50) * 1000, 2), "p95_ms": round(pct(v, 95) * 1000, 2),
                                       "n": len(v)} for k, v in res.items() if v}
                              for ph, res in (("empty", empty), ("seeded", seeded_res))}
        print(f"\nseeding: {n_threads:,} threads, {counts['threads_checkpoint']:,} checkpoints, "
              f"{counts['threads_checkpointblob']:,} blobs, {counts['threads_checkpointwrite']:,} writes, "
              f"{counts['runs_run']:,} runs in {seed_s:.0f}s; database {results['db_size']}")

        if plans:
            print("\n## EXPLAIN (ANALYZE, BUFFERS) on the seeded database: key plan lines")
            print(plans)

        if args.bg_runs:
            log(f"{len(bg_tids)} background runs at once on seeded threads")
            bg = await background_runs(server.url, bg_tids, want, args, errs)
            results["bg"] = bg
            print(f"\n{bg['n']:,} background runs (runs.create {args.bg_create_concurrency} in flight, then "
                  f"runs.join {args.bg_join_concurrency} in flight), on seeded threads: created {bg['created']:,}, "
                  f"ok {bg['ok']:,}, create phase {bg['create_s']} s, total {bg['total_s']} s "
                  f"({bg['runs_per_s']} runs/s), errors {errs.counts['bg.create'] + errs.counts['bg.join']}")
    finally:
        seeder.close()
        await c.http.client.aclose()

    print(f"\nerrors: {errs.total}" + (f" {dict(errs.counts)}" if errs.total else ""))
    for sample in errs.samples:
        print(f"  {sample}")
    results["errors"] = {"total": errs.total, "by_phase": dict(errs.counts), "samples": errs.samples}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))
    return 1 if errs.total else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=10_000, help="threads in the seeded database")
    p.add_argument("--checkpoints", type=int, default=20, help="checkpoints per thread")
    p.add_argument("--quick", action="store_true", help="~200 threads, fewer samples (smoke run)")
    p.add_argument("--n", type=int, default=100, help="timed requests per read figure")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--admissions", type=int, default=50, help="runs.create + join per database state")
    p.add_argument("--bg-runs", type=int, default=1000, help="background runs at once (0: skip)")
    p.add_argument("--bg-create-concurrency", type=int, default=16)
    p.add_argument("--bg-join-concurrency", type=int, default=64)
    p.add_argument("--request-timeout", type=float, default=60)
    p.add_argument("--phase-max-s", type=float, default=240, help="bound per measured phase")
    p.add_argument("--seed-max-s", type=float, default=600, help="stop seeding after this long")
    p.add_argument("--no-explain", action="store_true")
    p.add_argument("--no-candidates", action="store_true", help="skip trying CANDIDATE_INDEXES")
    p.add_argument("--json-out", default=None)
    p.add_argument("--explain-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.explain_child:
        explain_child(json.loads(args.explain_child))
        return 0
    if args.quick:
        args.threads, args.n, args.warmup, args.admissions = min(args.threads, 200), 20, 2, 10
        args.bg_runs, args.phase_max_s = min(args.bg_runs, 50), 90

    return on_prod_server(main_async, args, log)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop, drop the DB
    sys.exit(main())
