"""Assistants: saved, versioned run configurations of a graph.

Every change writes a new ``AssistantVersion`` and copies it onto the ``Assistant`` row,
so the row is always "the latest version" and the version table is the history.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.db.models import Max, QuerySet
from langgraph.pregel import Pregel
from pydantic import create_model

from agentserver.errors import APIError, bad_request, conflict, not_found, parse_uuid, unprocessable
from agentserver.graphs import LoadedGraph, default_assistant_id, get_registry
from agentserver.jsonquery import json_contains
from agentserver.rows import fetch_instance, model_columns
from crons.models import Cron
from runs.models import Assistant, AssistantVersion, Run
from runs.sql import db_value
from threads.models import Checkpoint, CheckpointBlob, CheckpointWrite, Thread

T = TypeVar("T")

SORT_FIELDS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
VERSIONED_FIELDS = ("graph_id", "name", "description", "config", "context", "metadata")


def ensure_system_assistants() -> None:
    """Create the default assistant of every configured graph (id = UUIDv5 of the graph id)."""
    registry = get_registry()
    for graph_id in registry.ids():
        with transaction.atomic():
            assistant, created = Assistant.objects.get_or_create(
                assistant_id=default_assistant_id(graph_id),
                defaults={
                    "graph_id": graph_id,
                    "name": graph_id,
                    "description": registry.get(graph_id).description,
                    "metadata": {"created_by": "system"},
                },
            )
            if created:
                _record_version(assistant)


# ---------------------------------------------------------------- lookups


@cache
def _assistant_by_id_sql() -> str:
    return f"SELECT {model_columns(Assistant)} FROM {Assistant._meta.db_table} WHERE assistant_id = %s"


def resolve_assistant_id(value: Any) -> uuid.UUID:
    """A registered graph name stands for its default assistant; anything else must be a UUID."""
    if isinstance(value, str) and value in get_registry():
        return default_assistant_id(value)
    return parse_uuid(value, "assistant")


def resolve_assistant(value: Any) -> Assistant:
    """The assistant named by a UUID or a graph name: 422 if malformed, 404 if missing.

    Every run reads it, so the statement is written once rather than compiled each time."""
    assistant_id = resolve_assistant_id(value)
    using = Assistant.objects.db
    params = [db_value("assistant_id", assistant_id, connections[using], Assistant)]
    assistant = fetch_instance(Assistant, _assistant_by_id_sql(), params, using)
    if assistant is None:
        raise not_found(f"Assistant with ID {assistant_id} not found")
    return assistant


def loaded_graph(graph_id: str) -> LoadedGraph:
    registry = get_registry()
    if graph_id not in registry:
        raise not_found(f"Graph '{graph_id}' not found")
    return registry.get(graph_id)


# ---------------------------------------------------------------- create, update, delete


def create_assistant(
    *,
    graph_id: str,
    assistant_id: uuid.UUID | None = None,
    config: dict | None = None,
    context: dict | None = None,
    metadata: dict | None = None,
    if_exists: str = "raise",
    name: str | None = None,
    description: str | None = None,
) -> Assistant:
    """Create version 1; an existing id is a 409 or, with ``do_nothing``, returned as is."""
    loaded_graph(graph_id)
    config, context = _sync_config_context(config or {}, context)
    with transaction.atomic():
        assistant, created = Assistant.objects.get_or_create(
            assistant_id=assistant_id or uuid.uuid4(),
            defaults={
                "graph_id": graph_id,
                "config": config,
                "context": context or {},
                "metadata": metadata or {},
                "name": name or "Untitled",
                "description": description,
            },
        )
        if created:
            _record_version(assistant)
    if not created and if_exists != "do_nothing":
        raise conflict(f"Assistant {assistant.assistant_id} already exists")
    return assistant


def update_assistant(value: Any, changes: dict[str, Any]) -> Assistant:
    """Write a new version from ``changes`` (metadata is merged) and make it the latest."""
    assistant_id = resolve_assistant_id(value)
    if "graph_id" in changes:
        loaded_graph(changes["graph_id"])
    with transaction.atomic():
        assistant = Assistant.objects.select_for_update().filter(pk=assistant_id).first()
        if assistant is None:
            raise not_found(f"Assistant with ID {assistant_id} not found")
        if "config" in changes or "context" in changes:
            _apply_config_change(assistant, changes)
        if "metadata" in changes:
            assistant.metadata = {**assistant.metadata, **changes["metadata"]}
        for key in ("graph_id", "name", "description"):
            if key in changes:
                setattr(assistant, key, changes[key])
        assistant.version = _next_version(assistant)
        assistant.save()
        _record_version(assistant)
    return assistant


def delete_assistant(value: Any, *, delete_threads: bool = False) -> None:
    """Delete the assistant with its versions, runs and crons (and, if asked, its threads)."""
    assistant_id = resolve_assistant_id(value)
    with transaction.atomic():
        deleted, _ = Assistant.objects.filter(pk=assistant_id).delete()
        if not deleted:
            raise not_found(f"Assistant with ID {assistant_id} not found")
        Cron.objects.filter(assistant_id=assistant_id).delete()
        Run.objects.filter(assistant_id=assistant_id).delete()
        if delete_threads:
            _delete_threads_of(assistant_id)


def _delete_threads_of(assistant_id: uuid.UUID) -> None:
    """Threads carry their assistant in ``metadata.assistant_id``; checkpoints go with them."""
    threads = Thread.objects.filter(json_contains("metadata", {"assistant_id": str(assistant_id)}))
    thread_ids = [str(pk) for pk in threads.values_list("thread_id", flat=True)]
    for model in (Checkpoint, CheckpointBlob, CheckpointWrite):
        model.objects.filter(thread_id__in=thread_ids).delete()
    Thread.objects.filter(thread_id__in=thread_ids).delete()


def _sync_config_context(config: dict, context: dict | None) -> tuple[dict, dict | None]:
    """Keep ``config.configurable`` and ``context`` the same dict, as the reference does."""
    configurable = config.get("configurable")
    if configurable and context:
        raise bad_request(
            "Cannot specify both configurable and context. Prefer setting context alone. "
            "Context was introduced in LangGraph 0.6.0 and is the long term planned "
            "replacement for configurable."
        )
    if configurable:
        return config, dict(configurable)
    if context:
        return {**config, "configurable": dict(context)}, context
    return config, context


def _apply_config_change(assistant: Assistant, changes: dict[str, Any]) -> None:
    if "config" in changes:
        config = changes["config"]
    else:
        # A new context replaces the old configurable rather than clashing with it.
        config = {k: v for k, v in assistant.config.items() if k != "configurable"}
    assistant.config, context = _sync_config_context(config, changes.get("context"))
    if context is not None:
        assistant.context = context


def _next_version(assistant: Assistant) -> int:
    # Not version + 1: after set_latest to an old version the next one is still new.
    latest = assistant.versions.aggregate(latest=Max("version"))["latest"] or 0
    return latest + 1


def _record_version(assistant: Assistant) -> AssistantVersion:
    return AssistantVersion.objects.create(
        assistant=assistant,
        version=assistant.version,
        **{field: getattr(assistant, field) for field in VERSIONED_FIELDS},
    )


# ---------------------------------------------------------------- search and versions


def filter_assistants(
    *, metadata: dict | None = None, graph_id: str | None = None, name: str | None = None
) -> QuerySet[Assistant]:
    queryset = Assistant.objects.all()
    if metadata:
        queryset = queryset.filter(json_contains("metadata", metadata))
    if graph_id:
        queryset = queryset.filter(graph_id=graph_id)
    if name:
        queryset = queryset.filter(name__icontains=name)
    return queryset


def search_assistants(
    *,
    metadata: dict | None = None,
    graph_id: str | None = None,
    name: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    limit: int = 10,
    offset: int = 0,
) -> tuple[list[Assistant], int]:
    """One page of matching assistants and the total; an unknown graph is a 404."""
    if graph_id:
        loaded_graph(graph_id)
    if sort_by not in SORT_FIELDS:
        raise unprocessable(f"Invalid sort_by: {sort_by!r}")
    queryset = filter_assistants(metadata=metadata, graph_id=graph_id, name=name)
    prefix = "-" if sort_order == "desc" else ""
    # The id breaks ties so that pages never overlap.
    ordered = queryset.order_by(f"{prefix}{sort_by}", f"{prefix}assistant_id")
    return list(ordered[offset : offset + limit]), queryset.count()


def count_assistants(
    *, metadata: dict | None = None, graph_id: str | None = None, name: str | None = None
) -> int:
    return filter_assistants(metadata=metadata, graph_id=graph_id, name=name).count()


def list_versions(
    value: Any, *, metadata: dict | None = None, limit: int = 10, offset: int = 0
) -> list[AssistantVersion]:
    """Versions newest first; none at all (or none matching) is the reference's 404."""
    assistant_id = resolve_assistant_id(value)
    queryset = AssistantVersion.objects.filter(assistant_id=assistant_id)
    if metadata:
        queryset = queryset.filter(json_contains("metadata", metadata))
    versions = list(queryset.order_by("-version")[offset : offset + limit])
    if not versions:
        raise not_found(f"Assistant with ID {assistant_id} not found")
    return versions


def set_latest_version(value: Any, version: int) -> Assistant:
    """Copy an existing version back onto the assistant row."""
    assistant_id = resolve_assistant_id(value)
    with transaction.atomic():
        assistant = Assistant.objects.select_for_update().filter(pk=assistant_id).first()
        if assistant is None:
            raise not_found(f"Assistant with ID {assistant_id} not found")
        chosen = assistant.versions.filter(version=version).first()
        if chosen is None:
            raise not_found(f"Version {version} of assistant {assistant_id} not found")
        for field in VERSIONED_FIELDS:
            setattr(assistant, field, getattr(chosen, field))
        assistant.version = version
        assistant.save()
    return assistant


# ---------------------------------------------------------------- graph introspection


def with_graph(assistant: Assistant, use: Callable[[Pregel], Awaitable[T]]) -> T:
    """Build the assistant's graph once and call ``use`` on it, from sync code.

    Factories see the assistant's configurable. A factory that raises is reported as a
    422 naming the graph: the request cannot be served, but the server is fine.
    """
    loaded = loaded_graph(assistant.graph_id)
    config = {"configurable": dict(assistant.config.get("configurable") or {})}

    async def run() -> T:
        async with loaded.build(config) as graph:
            return await use(graph)

    try:
        return async_to_sync(run)()
    except APIError:
        raise
    except NotImplementedError:
        raise unprocessable("The graph does not support visualization") from None
    except Exception as exc:
        raise unprocessable(
            f"Graph '{assistant.graph_id}' could not be built: {type(exc).__name__}: {exc}"
        ) from None


def draw_graph(assistant: Assistant, xray: bool | int = False) -> dict[str, list[dict]]:
    """Nodes and edges in the shape ``RemoteGraph.get_graph`` turns into a DrawableGraph."""

    async def draw(graph: Pregel) -> dict[str, list[dict]]:
        return (await graph.aget_graph(xray=xray)).to_json()

    drawn = with_graph(assistant, draw)
    nodes = []
    for node in drawn.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node = {**node, "data": {k: v for k, v in node["data"].items() if k != "id"}}
        nodes.append(node)
    edge_keys = ("source", "target", "data", "conditional")
    edges = [{k: edge[k] for k in edge_keys if k in edge} for edge in drawn.get("edges", [])]
    return {"nodes": nodes, "edges": edges}


def graph_schemas(assistant: Assistant) -> dict[str, Any]:
    """The JSON Schemas Studio builds its input and configuration forms from."""

    async def describe(graph: Pregel) -> dict[str, Any]:
        return schemas_of(graph)

    return {"graph_id": assistant.graph_id, **with_graph(assistant, describe)}


def subgraph_schemas(
    assistant: Assistant, namespace: str | None = None, *, recurse: bool = False
) -> dict[str, dict[str, Any]]:
    """Schemas of the subgraphs, keyed by namespace (``parent|child`` when recursing)."""

    async def collect(graph: Pregel) -> dict[str, dict[str, Any]]:
        found = graph.aget_subgraphs(namespace=namespace or None, recurse=recurse)
        return {ns: schemas_of(subgraph) async for ns, subgraph in found}

    return with_graph(assistant, collect)


def schemas_of(graph: Any) -> dict[str, dict | None]:
    """Each schema independently: one that cannot be generated is null, not an error."""
    return {
        "input_schema": _schema_or_none(graph.get_input_jsonschema),
        "output_schema": _schema_or_none(graph.get_output_jsonschema),
        "state_schema": _schema_or_none(lambda: _state_jsonschema(graph)),
        "config_schema": _schema_or_none(lambda: _config_jsonschema(graph)),
        "context_schema": _schema_or_none(graph.get_context_jsonschema),
    }


def _schema_or_none(make: Callable[[], dict | None]) -> dict | None:
    try:
        return make()
    except Exception:
        return None


def _state_jsonschema(graph: Pregel) -> dict:
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        update_type = graph.channels[key].UpdateType
        try:
            create_model(key, value=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _config_jsonschema(graph: Pregel) -> dict | None:
    # Since LangGraph 0.6 the configurable schema is the context schema.
    return graph.get_context_jsonschema() if getattr(graph, "context_schema", None) else None
