"""Thread state and history, read and written through the thread's graph (api-reference §1.4, §3.5).

The graph of a thread is ``thread.metadata["graph_id"]``. Graph entries may be factories
(even async context managers), so every call goes through ``LoadedGraph.build`` bound to
the ORM checkpointer; see ``with_graph`` for how sync views reach it.

``refresh_thread_from_checkpoint`` (and its async twin) is the one place that copies the
latest checkpoint onto the Thread row (values, interrupts, status); the run engine calls
it after every run and ``POST /threads/{id}/state`` after every update.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.utils import timezone
from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.pregel import Pregel
from langgraph.types import Command, Send, StateSnapshot, StateUpdate

from agentserver.errors import bad_request, conflict, not_found
from agentserver.graphs import LoadedGraph, get_registry
from agentserver.renderers import to_jsonable
from threads.checkpointer import DjangoCheckpointSaver
from threads.models import Thread, ThreadStatus
from threads.serializers import (
    checkpoint_wire,
    empty_thread_state,
    interrupt_wire,
    thread_state_wire,
)

T = TypeVar("T")
# Sentinel: leave the thread's `error` column as it is.
KEEP = object()
ACTIVE_RUN_STATUSES = ("pending", "running")


# ------------------------------------------------------------------ graph access


def graph_of(thread: Thread) -> LoadedGraph | None:
    """The thread's registered graph, or None when it has none (or names one not loaded)."""
    graph_id = (thread.metadata or {}).get("graph_id")
    registry = get_registry()
    if not isinstance(graph_id, str) or graph_id not in registry:
        return None
    return registry.get(graph_id)


def require_graph(thread: Thread) -> LoadedGraph:
    """The thread's graph for a write; the reference's 400 when it has none."""
    graph_id = (thread.metadata or {}).get("graph_id")
    if not graph_id:
        raise bad_request(
            f"Thread '{thread.thread_id}' has no assigned graph ID. This usually occurs when no run "
            "has been made on this thread. Please create a run first, or create the thread with a graph_id."
        )
    loaded = graph_of(thread)
    if loaded is None:
        raise not_found(f"Graph '{graph_id}' not found")
    return loaded


def with_graph(thread: Thread, fn: Callable[[Pregel], T]) -> T:
    """Run the sync ``fn(graph)`` in the calling thread, with the thread's graph built and bound to the saver.

    Building may need an event loop (async factories), so it happens in async code; ``fn`` is
    handed back to this thread (thread-sensitive) so graph methods take the saver's sync ORM
    path inside the caller's transaction. Call from sync code only.
    """
    loaded = graph_of(thread)
    assert loaded is not None, "with_graph needs a thread with a registered graph"
    build_config = {
        "configurable": {**(thread.config or {}).get("configurable", {}), "thread_id": str(thread.thread_id)}
    }

    async def run() -> T:
        async with loaded.build(build_config, checkpointer=DjangoCheckpointSaver()) as graph:
            return await sync_to_async(fn)(graph)

    return async_to_sync(run)()


def state_config(
    thread_id: uuid.UUID | str, checkpoint: dict[str, Any] | None = None, checkpoint_id: str | None = None
) -> RunnableConfig:
    """A RunnableConfig for the thread, optionally at a checkpoint; the path's thread id always wins."""
    configurable: dict[str, Any] = {"thread_id": str(thread_id), "checkpoint_ns": ""}
    for key in ("checkpoint_ns", "checkpoint_id", "checkpoint_map"):
        if checkpoint and checkpoint.get(key) is not None:
            configurable[key] = checkpoint[key]
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return RunnableConfig(configurable=configurable)


def _graph_call(thread: Thread, fn: Callable[[Pregel], T]) -> T:
    """``with_graph`` with LangGraph's input errors as 400s and unknown subgraphs as 404s."""
    try:
        return with_graph(thread, fn)
    except InvalidUpdateError as exc:
        raise bad_request(str(exc)) from None
    except ValueError as exc:
        if str(exc).startswith("Subgraph "):
            raise not_found(str(exc)) from None
        raise bad_request(str(exc)) from None


# ------------------------------------------------------------------ reads


def get_state(
    thread: Thread,
    *,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
    subgraphs: bool = False,
) -> dict[str, Any]:
    """ThreadState of the latest (or the given) checkpoint; the empty state before any checkpoint."""
    if graph_of(thread) is None:
        return empty_thread_state()
    config = state_config(thread.thread_id, checkpoint, checkpoint_id)
    snapshot = _graph_call(thread, lambda graph: graph.get_state(config, subgraphs=subgraphs))
    return thread_state_wire(snapshot)


def get_history(
    thread: Thread,
    *,
    limit: int = 1,
    before: str | None = None,
    metadata: dict[str, Any] | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """ThreadStates newest first; ``[]`` for a thread with no graph yet."""
    if graph_of(thread) is None:
        return []
    config = state_config(thread.thread_id, checkpoint)
    before_config = RunnableConfig(configurable={"checkpoint_id": before}) if before else None

    def read(graph: Pregel) -> list[StateSnapshot]:
        return list(
            graph.get_state_history(config, filter=metadata or None, before=before_config, limit=limit)
        )

    return [thread_state_wire(snapshot) for snapshot in _graph_call(thread, read)]


# ------------------------------------------------------------------ writes


def to_command(data: dict[str, Any]) -> Command:
    """A wire command (`update`, `goto` names or `{node, input}` sends, `resume`) as a Command."""
    goto = data.get("goto") or ()
    goto = goto if isinstance(goto, list) else [goto]
    sends = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(update=data.get("update"), goto=sends, resume=data.get("resume"))


def update_state(
    thread_id: uuid.UUID,
    *,
    values: Any,
    as_node: str | None = None,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
) -> dict[str, Any]:
    """Apply a state update (a fork when ``checkpoint`` names an older one) and refresh the thread.

    The thread row is locked so run admission cannot slip in between the in-flight check and the write.
    """
    with transaction.atomic():
        thread = Thread.objects.select_for_update().filter(pk=thread_id).first()
        if thread is None:
            raise not_found(f"Thread with ID {thread_id} not found")
        require_graph(thread)
        active = list(thread.runs.filter(status__in=ACTIVE_RUN_STATUSES).values_list("run_id", flat=True))
        if active:
            raise conflict(f"Thread {thread_id} has in-flight runs: {', '.join(map(str, active))}")
        config = state_config(thread_id, checkpoint, checkpoint_id)

        def apply(graph: Pregel) -> RunnableConfig:
            next_config = graph.update_state(config, values, as_node=as_node or None)
            write_thread_state(thread_id, graph.get_state(state_config(thread_id)))
            return next_config

        next_config = _graph_call(thread, apply)
    wire = checkpoint_wire(next_config)
    # 0.16.7 also answers the deprecated `configurable` and `checkpoint_id`.
    return {"checkpoint": wire, "configurable": wire, "checkpoint_id": wire and wire["checkpoint_id"]}


def _update_values(update: dict[str, Any]) -> Any:
    return to_command(update["command"]) if update.get("command") else update.get("values")


def apply_supersteps(thread: Thread, supersteps: list[dict[str, Any]]) -> None:
    """Replay ``[{"updates": [{values, command?, as_node}]}]`` into the thread, then refresh it."""
    require_graph(thread)
    steps = [[StateUpdate(_update_values(u), u["as_node"]) for u in step["updates"]] for step in supersteps]
    config = state_config(thread.thread_id)

    def apply(graph: Pregel) -> None:
        graph.bulk_update_state(config, steps)
        write_thread_state(thread.thread_id, graph.get_state(config))

    _graph_call(thread, apply)


# ------------------------------------------------------------------ the thread row


def thread_state_fields(
    snapshot: StateSnapshot,
    *,
    status_if_done: str = ThreadStatus.IDLE,
    status: str | None = None,
    error: Any = KEEP,
) -> dict[str, Any]:
    """The Thread columns a snapshot determines, for callers that fold them into their own UPDATE.

    Status: ``status`` when given (e.g. "error" after a failure, "busy" when another run is
    queued); else "interrupted" when the checkpoint has pending ``next`` tasks (interrupt or
    breakpoint); else ``status_if_done``.
    """
    has_checkpoint = checkpoint_wire(snapshot.config) is not None
    interrupts = {
        task.id: [interrupt_wire(i) for i in task.interrupts] for task in snapshot.tasks if task.interrupts
    }
    now = timezone.now()
    fields: dict[str, Any] = {
        "values": to_jsonable(snapshot.values) if has_checkpoint else None,
        "interrupts": to_jsonable(interrupts),
        "status": status or (ThreadStatus.INTERRUPTED if snapshot.next else status_if_done),
        "state_updated_at": now,
        "updated_at": now,
    }
    if error is not KEEP:
        fields["error"] = to_jsonable(error)
    return fields


def write_thread_state(thread_id: uuid.UUID | str, snapshot: StateSnapshot, **options: Any) -> str:
    """Write ``thread_state_fields(snapshot, **options)`` in one UPDATE; returns the status written."""
    fields = thread_state_fields(snapshot, **options)
    Thread.objects.filter(pk=thread_id).update(**fields)
    return fields["status"]


def refresh_thread_from_checkpoint(
    thread_id: uuid.UUID | str,
    *,
    status_if_done: str = ThreadStatus.IDLE,
    status: str | None = None,
    error: Any = KEEP,
) -> str | None:
    """Copy the latest checkpoint onto the Thread row: values, interrupts, status, state_updated_at.

    Sync; builds the thread's graph. Returns the status written, or None when the thread is
    gone or has no graph (nothing to read). ``error``: the error object to store (None clears
    it); by default the column is left alone. See ``thread_state_fields`` for the status rule.
    """
    thread = Thread.objects.filter(pk=thread_id).first()
    if thread is None or graph_of(thread) is None:
        return None
    config = state_config(thread.thread_id)
    snapshot = with_graph(thread, lambda graph: graph.get_state(config))
    return write_thread_state(
        thread.thread_id, snapshot, status_if_done=status_if_done, status=status, error=error
    )
