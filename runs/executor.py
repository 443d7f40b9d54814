"""One attempt of a run: execute the graph, publish its events, finish.

Called by both dispatchers (a Celery task, or the in-process pool of ``manage.py dev``)
on a worker thread, after ``runs.lease.claim_run`` made this worker the run's owner;
each attempt runs on that thread's event loop, with a clean context. Every write it makes
is fenced by the lease token.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import uvloop
from django.db import close_old_connections, connections, transaction
from django.db.models import CASCADE
from django.utils import timezone
from langgraph.types import Command, Send

from agentserver.conf import server_settings
from agentserver.events import CancelWatch, EventBus, get_event_bus
from agentserver.graphs import get_registry
from agentserver.renderers import dumps, to_jsonable
from runs.lease import FencedCheckpointSaver, LeaseLost, claim_run, lease_keeper
from runs.models import Run, RunStatus
from runs.modes import ModeTranslator, langgraph_modes
from runs.queue import lock_threads, next_queued_run, release_thread
from runs.serializers.runs import run_to_dict
from runs.sql import ACTIVE_STATUSES_SQL, db_value
from runs.webhooks import webhook_payload
from threads.checkpointer import DjangoCheckpointSaver
from threads.checkpointer.sql import fetch_last
from threads.models import Thread, ThreadStatus
from threads.state import thread_state_fields

logger = logging.getLogger(__name__)

# Exception types whose message is shown to API clients; others read "An internal error
# occurred" (as the reference server does), so secrets in exception texts do not leak.
VISIBLE_ERRORS = {
    "ValueError", "TypeError", "KeyError", "AttributeError", "RuntimeError", "RecursionError",
    "TimeoutError", "InvalidUpdateError", "GraphRecursionError", "EmptyInputError",
    "GraphBubbleUp", "TaskNotFound", "HTTPException", "CancelledError", "NotImplementedError",
    "ConnectionError", "AssertionError",
}


# How an attempt ended: its status, its error, the cancel action that stopped it ("" if none).
Ended = tuple[str, dict | None, str]


@dataclass
class RunOutcome:
    """What the dispatcher must do after an attempt."""

    next_run_ids: list[str] = field(default_factory=list)
    webhook: tuple[str, dict] | None = None


# ------------------------------------------------------------------------- execute


def execute_run(run_id: str) -> RunOutcome | None:
    """Claim and execute one attempt of ``run_id``; None when there was nothing to do."""
    run = claim_run(run_id)
    attempt = Attempt(run, get_event_bus()) if run is not None else None
    if attempt is not None and attempt.saver is not None:
        attempt.saver.read_ahead(attempt.graph_config())
    # The attempt reaches the database from other threads only: this thread's connection goes
    # back to the pool now rather than stay checked out, unused, for as long as the run lasts.
    close_old_connections()
    if attempt is None:
        return None
    # A clean context per attempt: nothing a graph sets in a contextvar reaches the next one.
    ended = _thread_runner().run(_run_to_end(attempt), context=contextvars.copy_context())
    if ended is None:
        return None
    # The finish runs here, once the loop has stopped: from inside the loop the ORM would
    # need a hop to another thread and back (it refuses to run in an event loop's thread).
    # Its connection goes back when the job ends (run_logged; Celery's Django fixup).
    return attempt.finish(*ended)


_local = threading.local()


def _thread_runner() -> asyncio.Runner:
    """This worker thread's event loop, kept across attempts: a fresh loop per run costs its
    set-up and a new default executor, whose threads every sync node would start again."""
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner(loop_factory=_new_event_loop)
    return runner


def _new_event_loop() -> asyncio.AbstractEventLoop:
    loop = uvloop.new_event_loop()
    loop.set_default_executor(_sync_pool())
    return loop


@cache
def _sync_pool() -> ThreadPoolExecutor:
    """One pool per process for sync nodes and ORM calls of every attempt's loop."""
    return ThreadPoolExecutor(max_workers=server_settings.SYNC_POOL_SIZE, thread_name_prefix="agentserver-sync")


async def _run_to_end(attempt: Attempt) -> Ended | None:
    try:
        return await attempt.execute()
    finally:
        # As asyncio.run would: tasks a graph left behind do not outlive its attempt.
        stragglers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in stragglers:
            task.cancel()
        await asyncio.gather(*stragglers, return_exceptions=True)


def graph_input(kwargs: dict) -> Any:
    """The input or ``Command`` the run starts with."""
    command = kwargs.get("command")
    if not command:
        return kwargs.get("input")
    goto = command.get("goto")
    if goto is not None:
        goto = [_send_or_node(g) for g in goto] if isinstance(goto, list) else _send_or_node(goto)
    update = command.get("update")
    if isinstance(update, list):
        update = [tuple(pair) for pair in update]
    return Command(resume=command.get("resume"), update=update, goto=goto or ())


def _send_or_node(value: Any) -> Any:
    return Send(value["node"], value.get("input")) if isinstance(value, dict) else value


def error_payload(exc: BaseException) -> dict:
    name = type(exc).__name__
    message = str(exc) if name in VISIBLE_ERRORS else "An internal error occurred"
    return {"error": name, "message": message}


def thread_stream_of(run: Run) -> str | None:
    """The thread stream a run's events also go to; temporary (stateless) threads vanish
    with the run, so nobody follows theirs."""
    return None if run.kwargs.get("temporary") else str(run.thread_id)


def publish_metadata(bus: EventBus, run: Run) -> None:
    """The first event of every attempt. The first attempt's is published by admission once
    committed, so a stream's first frame does not wait for a worker to pick the run up."""
    payload = dumps({"run_id": str(run.run_id), "attempt": run.attempt or 1})
    bus.publish(str(run.run_id), "metadata", payload, thread_id=thread_stream_of(run))


class Attempt:
    """The execution of one claimed attempt, from the first event to the finish."""

    def __init__(self, run: Run, bus: EventBus) -> None:
        self.run = run
        self.run_id = str(run.run_id)
        self.bus = bus
        self.kwargs: dict = run.kwargs
        self.temporary = bool(self.kwargs.get("temporary"))
        self.thread_stream = thread_stream_of(run)
        self.requested = list(self.kwargs.get("stream_mode") or ["values"])
        self.translator = ModeTranslator(self.requested, subgraphs=bool(self.kwargs.get("subgraphs")))
        self.lost = False
        self.last_values: Any = None
        # The state is read back only when the run paused (interrupt or breakpoint) or did
        # not finish normally; otherwise the last values chunk is the thread's state.
        self.needs_state = False
        self.snapshot: Any = None
        self.graph_task: asyncio.Task | None = None
        self.saver = None if self.temporary else FencedCheckpointSaver(self.run_id, run.lease_token)

    def publish(self, event: str, data: Any) -> None:
        if not self.lost:
            payload = data if isinstance(data, bytes) else dumps(data)
            self.bus.publish(self.run_id, event, payload, thread_id=self.thread_stream)

    async def execute(self) -> Ended | None:
        """The attempt up to its finish: how it ended, or None once the lease is lost (the
        attempt then writes nothing more)."""
        loop = asyncio.get_running_loop()
        watch = self.bus.watch_cancel(self.run_id)
        lease_keeper.hold(self.run_id, self.run.lease_token, lambda verdict: self._on_lease(loop, watch, verdict))
        try:
            if self.run.attempt > 1:  # the first attempt's was published at admission
                publish_metadata(self.bus, self.run)
            status, error, cancel_action = await self._supervise(watch)
        finally:
            lease_keeper.release(self.run.lease_token)
            watch.close()
        if self.lost:
            logger.warning("Run %s lost its lease; this attempt stops without writing", self.run_id)
            return None
        if self.needs_state and not self.temporary and cancel_action != "rollback":
            self.snapshot = await self._read_state()
        return status, error, cancel_action

    async def _supervise(self, watch: CancelWatch) -> tuple[str, dict | None, str]:
        """Run the graph until it ends, is cancelled, times out or loses its lease."""
        self.graph_task = asyncio.create_task(self._run_graph())
        cancel_task = asyncio.create_task(watch.wait())
        timeout = server_settings.RUN_TIMEOUT_SECONDS
        try:
            done, _ = await asyncio.wait(
                {self.graph_task, cancel_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cancel_task.cancel()
        if self.graph_task not in done:
            self.graph_task.cancel()
            await asyncio.gather(self.graph_task, return_exceptions=True)
            self.needs_state = True
            if cancel_task in done and not cancel_task.cancelled():
                return RunStatus.INTERRUPTED, None, cancel_task.result() or "interrupt"
            error = {"error": "TimeoutError", "message": f"Run exceeded {timeout} seconds"}
            self.publish("error", error)
            return RunStatus.TIMEOUT, error, ""
        exc = None if self.graph_task.cancelled() else self.graph_task.exception()
        if isinstance(exc, LeaseLost) or self.lost:
            self.lost = True
            return RunStatus.ERROR, None, ""
        if exc is None:
            return RunStatus.SUCCESS, None, ""
        self.needs_state = True
        error = error_payload(exc)
        self.publish("error", error)
        return RunStatus.ERROR, error, ""

    def _on_lease(self, loop: asyncio.AbstractEventLoop, watch: CancelWatch, verdict: str) -> None:
        """From the lease keeper's thread: the lease is lost, or a cancel was recorded
        (its signal may have been lost)."""
        if verdict != "lost":
            watch.deliver(verdict)
            return
        self.lost = True
        if self.graph_task is not None:
            loop.call_soon_threadsafe(self.graph_task.cancel)

    def graph_config(self) -> dict:
        return self.kwargs.get("config") or {}

    async def _run_graph(self) -> None:
        config = self.graph_config()
        loaded = get_registry().get(config.get("configurable", {}).get("graph_id"))
        # Subgraphs' chunks only when asked for: LangGraph then drops them itself (as the
        # translator would), and a run costs ~0.1 ms less of its CPU.
        subgraphs = self.translator.subgraphs
        options: dict[str, Any] = {
            "stream_mode": langgraph_modes(self.requested),
            "subgraphs": subgraphs,
            "interrupt_before": self.kwargs.get("interrupt_before"),
            "interrupt_after": self.kwargs.get("interrupt_after"),
        }
        if self.kwargs.get("durability"):
            options["durability"] = self.kwargs["durability"]
        if self.kwargs.get("context"):
            options["context"] = self.kwargs["context"]
        async with loaded.build(config, checkpointer=self.saver) as graph:
            if "events" in self.requested:
                chunks = self._chunks_and_events(graph, config, options)
            else:
                chunks = graph.astream(graph_input(self.kwargs), config, **options)
            async for item in chunks:
                namespace, mode, chunk = item if subgraphs else ((), *item)
                if not namespace:
                    if mode == "values":
                        self.last_values = chunk
                    elif mode == "updates" and "__interrupt__" in chunk:
                        self.needs_state = True
                for event, payload in self.translator.translate(namespace, mode, chunk):
                    self.publish(event, payload)

    async def _chunks_and_events(self, graph: Any, config: dict, options: dict) -> Any:
        """``events`` mode: LangChain's astream_events; the root graph's own stream
        events carry the chunks of the other modes."""
        events = graph.astream_events(graph_input(self.kwargs), config, version="v2", **options)
        async for event in events:
            if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
                yield event["data"]["chunk"]
            else:
                self.publish("events", event)

    async def _read_state(self) -> Any:
        """The thread's latest state after a run that did not end normally."""
        config = self.kwargs.get("config") or {}
        loaded = get_registry().get(config.get("configurable", {}).get("graph_id"))
        try:
            async with loaded.build(config, checkpointer=DjangoCheckpointSaver()) as graph:
                return await graph.aget_state({"configurable": {"thread_id": str(self.run.thread_id)}})
        except Exception:
            logger.exception("Could not read the state of thread %s", self.run.thread_id)
            return None

    # ---------------------------------------------------------------------- finish

    def _final_thread_fields(self, status: str, error: dict | None, values: Any) -> dict:
        failed = status in (RunStatus.ERROR, RunStatus.TIMEOUT)
        thread_status = ThreadStatus.ERROR if failed else None
        if self.snapshot is not None:
            return thread_state_fields(self.snapshot, status=thread_status, error=error)
        fields = {"status": thread_status or ThreadStatus.IDLE, "error": error, "state_updated_at": timezone.now()}
        if values is not None:
            fields.update(values=values, interrupts={})
        return fields

    def finish(self, status: str, error: dict | None, cancel_action: str) -> RunOutcome | None:
        if cancel_action == "rollback":
            return self._rollback()
        values = to_jsonable(self.last_values) if self.last_values is not None else None
        output = {"__error__": error} if error is not None else values
        if self.temporary:
            thread_status = ThreadStatus.IDLE if finish_temporary_run(self.run) else None
        else:
            thread_fields = self._final_thread_fields(status, error, values)
            thread_status = finish_run(self.run, status, output=output, error=error, thread_fields=thread_fields)
        if thread_status is None:
            return None
        return self._after_commit(status, output, error, others_waiting=thread_status == ThreadStatus.BUSY)

    def _rollback(self) -> RunOutcome | None:
        with transaction.atomic():
            lock_threads([self.run.thread_id])
            if not Run.objects.filter(pk=self.run_id, lease_token=self.run.lease_token).exists():
                return None
            DjangoCheckpointSaver().delete_for_runs([self.run_id])
            Run.objects.filter(pk=self.run_id).delete()
            release_thread(self.run.thread_id)
        self.bus.end(self.run_id, {"status": "rollback", "output": None}, thread_id=self.thread_stream)
        return RunOutcome(next_run_ids=next_queued_run(self.run.thread_id))

    def _after_commit(self, status: str, output: Any, error: dict | None, *, others_waiting: bool) -> RunOutcome:
        self.bus.end(self.run_id, {"status": status, "output": output}, thread_id=self.thread_stream)
        outcome = RunOutcome(next_run_ids=next_queued_run(self.run.thread_id) if others_waiting else [])
        webhook = self.kwargs.get("webhook")
        if webhook:
            outcome.webhook = (webhook, webhook_body(self.run, status, output, error))
        return outcome


def finish_run(run: Run, status: str, *, output: Any, error: dict | None, thread_fields: dict) -> str | None:
    """The fenced write that ends an attempt: the thread's state (busy while other runs are
    queued; its row is locked first, in admission's order), then the run, conditioned on the
    attempt's token. A stale attempt writes neither.

    Returns the thread's new status (only a busy thread has a queued run to start next), or
    None when the attempt was stale."""
    using = Run.objects.db
    now = timezone.now()
    fields = {**thread_fields, "updated_at": now}
    idle_status = fields.pop("status")
    connection = connections[using]
    thread_id = db_value("thread_id", run.thread_id, connection, Thread)
    run_id = db_value("run_id", run.run_id, connection)
    run_params = [
        status, db_value("output", output, connection), db_value("error", error, connection),
        db_value("ended_at", now, connection), run_id, db_value("lease_token", run.lease_token, connection),
    ]
    thread_params = [
        *(db_value(name, value, connection, Thread) for name, value in fields.items()),
        thread_id, run_id, idle_status, thread_id,
    ]
    if connection.vendor == "postgresql":
        lock_sql, finish_sql = _finish_sql_postgres(tuple(fields))
        finished = fetch_last(using, [(lock_sql, [thread_id]), (finish_sql, [*run_params, *thread_params])])
        return finished[0][0] if finished else None
    thread_sql, run_sql = _finish_sql(tuple(fields))
    returning = connection.features.can_return_columns_from_insert  # SQLite 3.35+
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(thread_sql + (" RETURNING status" if returning else ""), thread_params)
        row = cursor.fetchone() if returning else None
        cursor.execute(run_sql, run_params)
        if not cursor.rowcount:
            transaction.set_rollback(True)
            return None
    return row[0] if row else ThreadStatus.BUSY  # without RETURNING: look for a queued run


@cache
def _finish_sql(thread_columns: tuple[str, ...]) -> tuple[str, str]:
    """``finish_run``'s updates of the thread and of the run, as SQL built once per set of
    thread columns: they run for every run, and the ORM would compile them (CASE, EXISTS)
    every time."""
    quote = connections[Run.objects.db].ops.quote_name
    threads, runs = Thread._meta.db_table, Run._meta.db_table
    assignments = "".join(f"{quote(Thread._meta.get_field(name).column)} = %s, " for name in thread_columns)
    thread_sql = (
        f"UPDATE {threads} SET {assignments}status = CASE WHEN EXISTS ("
        f"SELECT 1 FROM {runs} WHERE thread_id = %s AND run_id <> %s AND status IN {ACTIVE_STATUSES_SQL}"
        f") THEN 'busy' ELSE %s END WHERE thread_id = %s"
    )
    run_sql = (
        f"UPDATE {runs} SET status = %s, output = %s, error = %s, ended_at = %s, lease_expires_at = NULL "
        f"WHERE run_id = %s AND lease_token = %s AND status = 'running'"
    )
    return thread_sql, run_sql


@cache
def _finish_sql_postgres(thread_columns: tuple[str, ...]) -> tuple[str, str]:
    """On Postgres, two statements sent together: the thread row's lock, then both updates
    in one statement, the thread's only if the fenced update of the run found its row.

    The lock is a statement of its own: a statement that waited for a row lock sees the
    other tables as they were when it started (READ COMMITTED), so the thread update's
    EXISTS would miss a run queued by the admission it waited for, and the thread would read
    idle with that run pending. (The EXISTS sees this run as it was: the updates of one
    statement do not see each other.)"""
    thread_sql, run_sql = _finish_sql(thread_columns)
    lock_sql = f"SELECT 1 FROM {Thread._meta.db_table} WHERE thread_id = %s FOR UPDATE"
    finish_sql = (
        f"WITH finished AS ({run_sql} RETURNING 1) "
        f"{thread_sql} AND EXISTS (SELECT 1 FROM finished) RETURNING status"
    )
    return lock_sql, finish_sql


def finish_temporary_run(run: Run) -> bool:
    """A stateless run's thread (and with it the run) is deleted once the attempt is over:
    the run first, conditioned on the attempt's token, then the thread with what refers to it."""
    using = Run.objects.db
    connection = connections[using]
    run_sql, thread_sqls = _temporary_finish_sql()
    thread_id = db_value("thread_id", run.thread_id, connection, Thread)
    run_params = [db_value("run_id", run.run_id, connection), db_value("lease_token", run.lease_token, connection)]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(run_sql, run_params)
        if not cursor.rowcount:
            return False
        for sql in thread_sqls:
            cursor.execute(sql, [thread_id])
    return True


@cache
def _temporary_finish_sql() -> tuple[str, list[str]]:
    """``finish_temporary_run``'s statements, built once: the ORM's delete of a thread collects
    its cascade with a SELECT and compiles every statement on each call. The cascade written out
    is every model referring to a thread (a run, a cron: none has references of its own)."""
    quote = connections[Run.objects.db].ops.quote_name
    run_sql = f"DELETE FROM {Run._meta.db_table} WHERE run_id = %s AND lease_token = %s AND status = 'running'"
    thread_sqls = []
    for relation in Thread._meta.related_objects:
        if relation.on_delete is not CASCADE or relation.related_model._meta.related_objects:
            raise NotImplementedError(f"deleting a thread's {relation.name} needs more than one DELETE")
        table, column = relation.related_model._meta.db_table, quote(relation.field.column)
        thread_sqls.append(f"DELETE FROM {table} WHERE {column} = %s")
    thread_sqls.append(f"DELETE FROM {Thread._meta.db_table} WHERE thread_id = %s")
    return run_sql, thread_sqls


def webhook_body(run: Run, status: str, output: Any, error: dict | None) -> dict:
    values = output if isinstance(output, dict) and "__error__" not in output else None
    return webhook_payload(
        run_to_dict(run), status=status, values=values, error=error,
        started_at=run.started_at, ended_at=timezone.now(),
    )

