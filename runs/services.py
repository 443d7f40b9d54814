"""Run admission, double-texting, cancellation and reads of finished runs.

Every state change here happens in one transaction that locks the thread row; Celery
messages and cancel signals go out only after that transaction commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from agentserver.errors import APIError, bad_request, conflict, not_found, unprocessable
from agentserver.events import get_event_bus
from agentserver.rows import (
    fetch_by_key,
    fetch_instance,
    insert_row,
    insert_statement,
    model_columns,
    update_row,
    update_statement,
)
from runs.assistants import resolve_assistant
from runs.dispatch import dispatch_run
from runs.executor import publish_metadata
from runs.models import ACTIVE_RUN_STATUSES, Assistant, Run, RunStatus
from runs.queue import lock_threads, next_queued_run, release_thread
from runs.sql import ACTIVE_STATUSES_SQL, db_value
from runs.webhooks import WebhookRejected, validate_webhook_url
from threads.checkpointer import DjangoCheckpointSaver
from threads.models import Thread, ThreadStatus

RESERVED_METADATA = {"thread_id", "assistant_id", "run_id", "cron_id", "counters_since_delta_snapshot"}
RESERVED_CONFIGURABLE_PREFIXES = ("langgraph_auth_user", "__otel_")
RESERVED_CONFIGURABLE = {
    "langgraph_request_id", "__langsmith_project__", "__langsmith_example_id__", "__request_start_time_ms__",
    "__after_seconds__", "__dd_trace_headers__", "__pregel_node_finished",
}
HIDDEN_HEADERS = {"x-api-key", "x-tenant-id", "x-service-key"}
REJECT_MESSAGE = "Thread is already running a task. Wait for it to finish or choose a different multitask strategy."


@dataclass
class Admission:
    """A created run and what must happen once its transaction has committed."""

    run: Run
    cancel_signals: list[tuple[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------- config


def _merge_config(*configs: dict) -> dict:
    """Later configs win; ``configurable`` and ``metadata`` are merged key by key."""
    merged: dict[str, Any] = {}
    for config in configs:
        for key, value in (config or {}).items():
            if key in {"configurable", "metadata"} and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def _clean_configurable(configurable: dict) -> dict:
    return {
        key: value
        for key, value in configurable.items()
        if key not in RESERVED_CONFIGURABLE and not key.startswith(RESERVED_CONFIGURABLE_PREFIXES)
    }


def _header_configurable(headers: dict[str, str]) -> dict[str, str]:
    """Request headers a graph may read: ``x-*`` (minus credentials) and the user agent."""
    picked = {}
    for name, value in headers.items():
        name = name.lower()
        if (name.startswith("x-") and name not in HIDDEN_HEADERS) or name == "user-agent":
            picked[name] = value
    return picked


def build_run_config(
    assistant: Assistant, thread: Thread, data: dict, run_id: uuid.UUID, headers: dict[str, str]
) -> tuple[dict, dict]:
    """The run's config and context: assistant, then thread, then request; ids injected."""
    request_config = dict(data["config"])
    request_config["configurable"] = _clean_configurable(request_config.get("configurable") or {})
    config = _merge_config(assistant.config, thread.config, request_config)
    context = {**(assistant.context or {}), **data["context"]}
    configurable = {**_header_configurable(headers), **config.get("configurable", {}), **data["context"]}
    configurable.update(
        run_id=str(run_id),
        thread_id=str(thread.thread_id),
        graph_id=assistant.graph_id,
        assistant_id=str(assistant.assistant_id),
    )
    checkpoint = data.get("checkpoint") or {}
    if data.get("checkpoint_id"):
        checkpoint = {**checkpoint, "checkpoint_id": data["checkpoint_id"]}
    for key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
        if checkpoint.get(key) is not None:
            configurable[key] = checkpoint[key]
    config["configurable"] = configurable
    config.setdefault("metadata", {})
    return config, context


def _run_kwargs(data: dict, config: dict, context: dict, *, temporary: bool) -> dict:
    return {
        "input": data.get("input"),
        "command": data.get("command"),
        "config": config,
        "context": context,
        "stream_mode": data["stream_mode"],
        "interrupt_before": data.get("interrupt_before") or assistant_breakpoints(config, "interrupt_before"),
        "interrupt_after": data.get("interrupt_after") or assistant_breakpoints(config, "interrupt_after"),
        "webhook": data.get("webhook"),
        "feedback_keys": data.get("feedback_keys"),
        "temporary": temporary,
        "subgraphs": bool(data.get("stream_subgraphs")),
        "resumable": bool(data.get("stream_resumable")),
        "checkpoint_during": data.get("checkpoint_during"),
        "durability": data.get("durability"),
        "on_disconnect": data.get("on_disconnect", "continue"),
    }


def assistant_breakpoints(config: dict, key: str) -> Any:
    """Breakpoints saved in an assistant's config apply to its runs."""
    return (config.get("configurable") or {}).get(key) or config.get(key)


def _validate_request(data: dict, *, stateless: bool) -> None:
    if data["context"] and (data["config"].get("configurable") or {}):
        raise bad_request(
            "Cannot specify both configurable and context. Prefer setting context alone. "
            "Context was introduced in LangGraph 0.6.0 and is the long term planned replacement for configurable."
        )
    command = data.get("command") or {}
    if stateless and command.get("resume") is not None:
        raise bad_request("You must provide a thread_id when resuming.")
    if data.get("webhook"):
        try:
            validate_webhook_url(data["webhook"])
        except WebhookRejected as exc:
            raise unprocessable(str(exc)) from None


# --------------------------------------------------------------------- admission


def create_run(
    data: dict, *, thread_id: uuid.UUID | None, headers: dict[str, str], stateless: bool = False
) -> Run:
    """Admit a run (api-reference §3.3, §3.4) and dispatch it once committed.

    Stateless runs get a fresh thread, deleted afterwards unless ``on_completion=keep``.
    """
    try:
        assistant = resolve_assistant(data["assistant_id"])
    except APIError as exc:
        if exc.status_code == 404:
            raise not_found("Thread or assistant not found.") from None
        raise
    _validate_request(data, stateless=stateless)
    with transaction.atomic():
        admission = _admit(assistant, data, thread_id, headers, stateless=stateless)
        run = admission.run
        transaction.on_commit(lambda: _after_admission(admission, data["after_seconds"]))
    return run


def _after_admission(admission: Admission, delay: float) -> None:
    bus = get_event_bus()
    for run_id, action in admission.cancel_signals:
        bus.signal_cancel(run_id, action)
    publish_metadata(bus, admission.run)
    dispatch_run(str(admission.run.run_id), delay=delay)


def _lock_thread(
    stamp: dict[str, str], data: dict, thread_id: uuid.UUID | None, *, stateless: bool
) -> tuple[Thread, bool]:
    """The run's thread, locked (created if asked, already stamped and busy), and whether it
    was created here."""
    if stateless:
        return insert_row(Thread(metadata=stamp, status=ThreadStatus.BUSY), Thread.objects.db), True
    using = Thread.objects.db
    connection = connections[using]
    lock_sql, _ = _admission_sql(connection.vendor)
    params = [db_value("thread_id", thread_id, connection, Thread)]
    thread = fetch_instance(Thread, lock_sql, params, using)
    if thread is None:
        if data.get("if_not_exists") != "create":
            raise not_found("Thread or assistant not found.")
        try:
            with transaction.atomic(using):
                thread = Thread(thread_id=thread_id, metadata=stamp, status=ThreadStatus.BUSY)
                return insert_row(thread, using), True
        except IntegrityError:
            # A concurrent admission created the thread first (this INSERT waited until that
            # one committed): this run joins the thread as a run on an existing one does.
            thread = fetch_instance(Thread, lock_sql, params, using)
            if thread is None:  # deleted again in between
                raise conflict("The thread was created and deleted concurrently; retry.") from None
    return thread, False


def _add_run(run: Run, thread: Thread, stamp: dict[str, str], *, created: bool) -> bool:
    """Insert the run, and stamp its locked thread and mark it busy (one created here is
    already); whether other runs were in flight on it.

    In flight is asked only once the lock is held: Postgres (READ COMMITTED) evaluates a
    statement that waited for a row lock against the other tables as they were when it
    started, so an EXISTS in the locking statement would miss the run of the admission it
    waited for. On Postgres the question, the INSERT and the UPDATE are one statement (its
    EXISTS does not see the run it inserts: the parts of a statement share one snapshot)."""
    using = Run.objects.db
    if created:
        insert_row(run, using)
        return False
    thread.metadata = {**thread.metadata, **stamp}
    thread.status = ThreadStatus.BUSY
    connection = connections[using]
    _, in_flight_sql = _admission_sql(connection.vendor)
    in_flight_params = [db_value("thread_id", thread.thread_id, connection, Thread)]
    update_fields = ("metadata", "status", "updated_at")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            insert_sql, insert_params = insert_statement(run, using)
            update_sql, update_params = update_statement(thread, update_fields, using)
            cursor.execute(
                f"WITH in_flight AS ({in_flight_sql}), run AS ({insert_sql}) "
                f"{update_sql} RETURNING (SELECT * FROM in_flight)",
                [*in_flight_params, *insert_params, *update_params],
            )
            return bool(cursor.fetchone()[0])
        cursor.execute(in_flight_sql, in_flight_params)
        busy = bool(cursor.fetchone()[0])
    insert_row(run, using)
    update_row(thread, update_fields, using)
    return busy


@cache
def _admission_sql(vendor: str) -> tuple[str, str]:
    """``_lock_thread``'s statements, written once: compiled by the ORM they cost more CPU
    than the rest of admission."""
    threads, runs = Thread._meta.db_table, Run._meta.db_table
    lock = " FOR UPDATE" if vendor == "postgresql" else ""
    return (
        f"SELECT {model_columns(Thread)} FROM {threads} WHERE thread_id = %s{lock}",
        f"SELECT EXISTS (SELECT 1 FROM {runs} WHERE thread_id = %s AND status IN {ACTIVE_STATUSES_SQL})",
    )


def _admit(
    assistant: Assistant, data: dict, thread_id: uuid.UUID | None, headers: dict[str, str], *, stateless: bool
) -> Admission:
    stamp = {"graph_id": assistant.graph_id, "assistant_id": str(assistant.assistant_id)}
    thread, created = _lock_thread(stamp, data, thread_id, stateless=stateless)
    strategy = data.get("multitask_strategy", "enqueue")
    run_id = uuid.uuid4()
    config, context = build_run_config(assistant, thread, data, run_id, headers)
    temporary = stateless and data.get("on_completion", "delete") == "delete"
    metadata = {k: v for k, v in data["metadata"].items() if k not in RESERVED_METADATA}
    now = timezone.now()
    run = Run(
        run_id=run_id,
        thread=thread,
        assistant_id=assistant.assistant_id,
        status=RunStatus.PENDING,
        metadata={**metadata, "assistant_id": str(assistant.assistant_id)},
        kwargs=_run_kwargs(data, config, context, temporary=temporary),
        multitask_strategy=strategy if not stateless else "reject",
        created_at=now + timedelta(seconds=data["after_seconds"]),
    )
    busy = _add_run(run, thread, stamp, created=created)
    if busy and strategy == "reject":
        raise conflict(REJECT_MESSAGE)  # the transaction's rollback takes the run back
    admission = Admission(run=run)
    if busy and strategy in {"interrupt", "rollback"}:
        in_flight = list(Run.objects.filter(thread=thread, status__in=ACTIVE_RUN_STATUSES).exclude(pk=run_id))
        admission.cancel_signals = _supersede(in_flight, strategy)
    return admission


def _supersede(runs: list[Run], action: str) -> list[tuple[str, str]]:
    """Stop in-flight runs for a newer one: queued ones at once, running ones by signal.

    A run read as pending may be claimed by a worker before this transaction's write reaches it
    (claims do not take the thread lock); it is then stopped like any running run.
    """
    signals = []
    for run in runs:
        if run.status == RunStatus.PENDING and _cancel_pending(run, action):
            continue
        Run.objects.filter(pk=run.run_id, status=RunStatus.RUNNING).update(cancel_action=action)
        signals.append((str(run.run_id), action))
    return signals


def _cancel_pending(run: Run, action: str) -> bool:
    """End a run that has not started; False when a worker claimed it meanwhile."""
    still_pending = Run.objects.filter(pk=run.run_id, status=RunStatus.PENDING)
    if action == "rollback":
        cancelled = still_pending.delete()[0] > 0
    else:
        cancelled = still_pending.update(
            status=RunStatus.INTERRUPTED, ended_at=timezone.now(), cancel_action=action
        ) > 0
    if cancelled:
        # Readers waiting on a run that never started learn its end once the cancel commits.
        status = "rollback" if action == "rollback" else RunStatus.INTERRUPTED
        ended = {"status": status, "output": None}
        transaction.on_commit(lambda: get_event_bus().end(str(run.run_id), ended, thread_id=str(run.thread_id)))
    return cancelled


# ------------------------------------------------------------------------ cancel


def cancel_runs(runs_query: Any, action: str) -> list[Run]:
    """Cancel every pending or running run matched; 404 when none is in flight."""
    if action not in {"interrupt", "rollback"}:
        action = "interrupt"
    with transaction.atomic():
        lock_threads(list(runs_query.filter(status__in=ACTIVE_RUN_STATUSES).values_list("thread_id", flat=True)))
        runs = list(runs_query.select_for_update().filter(status__in=ACTIVE_RUN_STATUSES))
        if not runs:
            raise not_found("No matching runs to cancel. Only pending or running runs can be cancelled.")
        signals = _supersede(runs, action)
        threads = {run.thread_id for run in runs if run.status == RunStatus.PENDING}
        for thread_id in threads:
            release_thread(thread_id)
        transaction.on_commit(lambda: _after_cancel(signals, threads))
    return runs


def _after_cancel(signals: list[tuple[str, str]], threads: set[uuid.UUID]) -> None:
    bus = get_event_bus()
    for run_id, action in signals:
        bus.signal_cancel(run_id, action)
    for thread_id in threads:
        nothing_running = not Run.objects.filter(thread_id=thread_id, status=RunStatus.RUNNING).exists()
        if nothing_running:
            for run_id in next_queued_run(thread_id):
                dispatch_run(run_id)


# ------------------------------------------------------------------------- reads


def get_thread_run(thread_id: uuid.UUID, run_id: uuid.UUID) -> Run:
    run = fetch_by_key(Run, run_id=run_id, thread_id=thread_id)
    if run is None:
        raise not_found("Run not found")
    return run


def list_thread_runs(thread_id: uuid.UUID, *, limit: int, offset: int, status: str | None) -> list[Run]:
    if not Thread.objects.filter(pk=thread_id).exists():
        raise not_found(f"Thread with ID {thread_id} not found")
    runs = Run.objects.filter(thread_id=thread_id).order_by("-created_at")
    if status:
        runs = runs.filter(status=status)
    return list(runs[offset : offset + limit])


def delete_run(thread_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Delete a finished run and the checkpoints it wrote."""
    run = get_thread_run(thread_id, run_id)
    if run.status in ACTIVE_RUN_STATUSES:
        raise conflict("Run is still pending or running; cancel it first.")
    with transaction.atomic():
        DjangoCheckpointSaver().delete_for_runs([str(run_id)])
        run.delete()


def run_output(run: Run) -> Any:
    """What /wait and /join answer for a finished run (api-reference §2.5)."""
    if run.output is not None:
        return run.output
    if run.error:
        return {"__error__": run.error}
    thread = fetch_by_key(Thread, thread_id=run.thread_id)
    if thread is None:
        return {}
    values = dict(thread.values) if isinstance(thread.values, dict) else (thread.values or {})
    if thread.interrupts and isinstance(values, dict):
        values["__interrupt__"] = [i for group in thread.interrupts.values() for i in group]
    return values
