"""Request validation and wire shapes of threads, state and history (api-reference §1.3, §1.4).

Input serializers only validate; unknown body fields are ignored (the SDK sends fields
some server versions do not know). Output is built by plain functions: faster than
ModelSerializer and explicit about the exact keys the SDK, Studio and RemoteGraph read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from langgraph.types import Interrupt, PregelTask, StateSnapshot
from rest_framework import serializers

from agentserver.params import MAX_INT
from threads.models import Thread, ThreadStatus

THREAD_SELECT_FIELDS = (
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "context",
    "status",
    "values",
    "interrupts",
    "error",
)
THREAD_SORT_FIELDS = ("thread_id", "status", "created_at", "updated_at", "state_updated_at")
STATE_SELECT_FIELDS = (
    "values",
    "next",
    "tasks",
    "checkpoint",
    "metadata",
    "created_at",
    "parent_checkpoint",
    "interrupts",
    "checkpoint_id",
    "parent_checkpoint_id",
)
EXTRACT_ROOTS = ("values", "metadata", "config", "interrupts")
EXTRACT_MAX = 10
TTL_STRATEGIES = ("delete", "keep_latest")
# A thousand years: longer means "never" in practice, and expiry dates must stay within datetime's range.
TTL_MAX_MINUTES = 1000 * 365 * 24 * 60
_SEGMENT = re.compile(r"^([^.\[\]]+)((?:\[-?\d+\])*)$")


# ------------------------------------------------------------------ input fields


_TTL_MINUTES = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": TTL_MAX_MINUTES}


@extend_schema_field(
    {
        "oneOf": [
            _TTL_MINUTES,
            {
                "type": "object",
                "properties": {"ttl": _TTL_MINUTES, "strategy": {"type": "string", "enum": list(TTL_STRATEGIES)}},
                "required": ["ttl"],
            },
        ]
    }
)
class TTLField(serializers.Field):
    """`{"ttl": minutes, "strategy": "delete"|"keep_latest"}`, or bare minutes (strategy delete)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            minutes, strategy = data.get("ttl"), data.get("strategy") or "delete"
        else:
            minutes, strategy = data, "delete"
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
            raise serializers.ValidationError("ttl must be a positive number of minutes")
        if minutes > TTL_MAX_MINUTES:
            raise serializers.ValidationError(f"ttl must be at most {TTL_MAX_MINUTES} minutes (1000 years)")
        if strategy not in TTL_STRATEGIES:
            raise serializers.ValidationError(f"strategy must be one of {', '.join(TTL_STRATEGIES)}")
        return {"minutes": float(minutes), "strategy": strategy}

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.ANY)
class AnyJSONField(serializers.Field):
    """Any JSON value, null included (state values may be an object, a list or null)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def _optional_dict() -> serializers.DictField:
    return serializers.DictField(required=False, allow_null=True)


def _choice(choices: tuple[str, ...] | list[str], **kwargs: Any) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=list(choices), required=False, allow_null=True, **kwargs)


class CheckpointField(serializers.DictField):
    """A checkpoint object: `{thread_id?, checkpoint_ns?, checkpoint_id?, checkpoint_map?}`."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        for key in ("checkpoint_ns", "checkpoint_id"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise serializers.ValidationError(f"{key} must be a string")
        if value.get("checkpoint_map") is not None and not isinstance(value["checkpoint_map"], dict):
            raise serializers.ValidationError("checkpoint_map must be an object")
        return value


# ------------------------------------------------------------------ threads


class SuperstepUpdateSerializer(serializers.Serializer):
    values = AnyJSONField()
    command = serializers.DictField(required=False, allow_null=True)
    as_node = serializers.CharField()


class SuperstepSerializer(serializers.Serializer):
    updates = serializers.ListField(child=SuperstepUpdateSerializer(), allow_empty=False)


class ThreadCreateSerializer(serializers.Serializer):
    thread_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    metadata = _optional_dict()
    if_exists = _choice(("raise", "do_nothing"))
    ttl = TTLField(required=False, allow_null=True)
    supersteps = serializers.ListField(child=SuperstepSerializer(), required=False, allow_null=True)


class ThreadPatchSerializer(serializers.Serializer):
    metadata = _optional_dict()
    ttl = TTLField(required=False, allow_null=True)


class ThreadFilterSerializer(serializers.Serializer):
    """The filters search and count share."""

    metadata = _optional_dict()
    values = _optional_dict()
    status = _choice(ThreadStatus.values)


class ThreadSearchSerializer(ThreadFilterSerializer):
    ids = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000)
    offset = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_INT)
    sort_by = _choice(THREAD_SORT_FIELDS)
    sort_order = _choice(("asc", "desc"))
    select = serializers.ListField(
        child=serializers.ChoiceField(THREAD_SELECT_FIELDS), required=False, allow_null=True
    )
    extract = serializers.DictField(child=serializers.CharField(), required=False, allow_null=True)

    def validate_extract(self, value: dict[str, str] | None) -> dict[str, list[str | int]] | None:
        if not value:
            return None
        if len(value) > EXTRACT_MAX:
            raise serializers.ValidationError(f"at most {EXTRACT_MAX} extract paths are allowed")
        return {alias: parse_extract_path(path) for alias, path in value.items()}


class ThreadPruneSerializer(serializers.Serializer):
    thread_ids = serializers.ListField(child=serializers.CharField())
    strategy = _choice(TTL_STRATEGIES)


def parse_extract_path(path: str) -> list[str | int]:
    """`values.messages[-1].content` → `["values", "messages", -1, "content"]`; bad paths are 422s."""
    parts: list[str | int] = []
    for segment in path.split("."):
        match = _SEGMENT.match(segment)
        if not match:
            raise serializers.ValidationError(f"invalid extract path {path!r}")
        parts.append(match.group(1))
        parts.extend(int(index) for index in re.findall(r"-?\d+", match.group(2)))
    if parts[0] not in EXTRACT_ROOTS:
        raise serializers.ValidationError(
            f"extract path {path!r} must start with one of {', '.join(EXTRACT_ROOTS)}"
        )
    return parts


# ------------------------------------------------------------------ state


class StateSelectField(serializers.ListField):
    """ThreadState fields, or `values.<key>` for one state key."""

    child = serializers.CharField()

    def to_internal_value(self, data: Any) -> list[str]:
        fields = super().to_internal_value(data)
        for field in fields:
            if field not in STATE_SELECT_FIELDS and not (field.startswith("values.") and len(field) > 7):
                raise serializers.ValidationError(f"invalid select field {field!r}")
        return fields


class StateUpdateSerializer(serializers.Serializer):
    values = AnyJSONField()
    as_node = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    checkpoint = CheckpointField(required=False, allow_null=True)
    checkpoint_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class StateQuerySerializer(serializers.Serializer):
    select = StateSelectField()


class StateAtCheckpointSerializer(serializers.Serializer):
    checkpoint = CheckpointField()
    subgraphs = serializers.BooleanField(required=False, default=False)
    select = StateSelectField(required=False, allow_null=True)


class HistorySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000)
    before = AnyJSONField()
    metadata = _optional_dict()
    checkpoint = CheckpointField(required=False, allow_null=True)
    select = StateSelectField(required=False, allow_null=True)

    def validate_before(self, value: Any) -> str | None:
        """`before` is a checkpoint id or a checkpoint object; only its id matters."""
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("checkpoint_id"), str):
            return value["checkpoint_id"]
        raise serializers.ValidationError("must be a checkpoint id or a checkpoint object with checkpoint_id")


# ------------------------------------------------------------------ wire shapes


class ThreadSerializer(serializers.Serializer):
    """The Thread object (documents ``thread_wire``; ``select`` may return a subset)."""

    thread_id = serializers.UUIDField(required=False)
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)
    state_updated_at = serializers.DateTimeField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    config = serializers.DictField(required=False, allow_null=True)
    context = serializers.DictField(required=False, allow_null=True)
    status = serializers.ChoiceField(ThreadStatus.values, required=False, allow_null=True)
    values = AnyJSONField()
    interrupts = serializers.DictField(required=False, allow_null=True)
    error = AnyJSONField()
    ttl = serializers.DictField(required=False)
    extracted = serializers.DictField(required=False)


class CheckpointWireSerializer(serializers.Serializer):
    checkpoint_id = serializers.CharField()
    thread_id = serializers.CharField()
    checkpoint_ns = serializers.CharField(allow_blank=True)
    checkpoint_map = serializers.DictField(required=False, allow_null=True)


class ThreadStateSerializer(serializers.Serializer):
    """The ThreadState object (documents ``thread_state_wire``; ``select`` may return a subset)."""

    values = AnyJSONField()
    next = serializers.ListField(child=serializers.CharField(), required=False)
    tasks = serializers.ListField(child=serializers.DictField(), required=False)
    metadata = serializers.DictField(required=False, allow_null=True)
    created_at = serializers.CharField(required=False, allow_null=True)
    checkpoint = CheckpointWireSerializer(required=False, allow_null=True)
    parent_checkpoint = CheckpointWireSerializer(required=False, allow_null=True)
    interrupts = serializers.ListField(child=serializers.DictField(), required=False)
    checkpoint_id = serializers.CharField(required=False, allow_null=True)
    parent_checkpoint_id = serializers.CharField(required=False, allow_null=True)


def thread_wire(thread: Thread, *, include_ttl: bool = False) -> dict[str, Any]:
    """The Thread object of §1.3."""
    data: dict[str, Any] = {
        "thread_id": str(thread.thread_id),
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
        "state_updated_at": thread.state_updated_at,
        "metadata": thread.metadata or {},
        "config": thread.config or {},
        "status": thread.status,
        "values": thread.values,
        "interrupts": thread.interrupts or {},
        "error": thread.error,
    }
    if include_ttl and thread.ttl_minutes is not None:
        data["ttl"] = {
            "strategy": thread.ttl_strategy or "delete",
            "ttl_minutes": thread.ttl_minutes,
            "expires_at": thread.expires_at,
        }
    return data


def select_thread_fields(data: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return data
    context = (data.get("config") or {}).get("context", {})
    return {field: context if field == "context" else data.get(field) for field in select}


def checkpoint_wire(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A RunnableConfig as the wire checkpoint object; None without a checkpoint id."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    checkpoint: dict[str, Any] = {
        "checkpoint_id": configurable["checkpoint_id"],
        "thread_id": str(configurable["thread_id"]),
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
    }
    if "checkpoint_map" in configurable:
        checkpoint["checkpoint_map"] = configurable["checkpoint_map"]
    return checkpoint


def task_checkpoint_wire(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where a task's subgraph keeps its state: its namespace, with or without a checkpoint id yet."""
    configurable = config.get("configurable") or {}
    if not configurable.get("thread_id"):
        return None
    keys = ("thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map")
    return {key: configurable[key] for key in keys if key in configurable}


def interrupt_wire(interrupt: Any) -> dict[str, Any]:
    """Only keys `langgraph.types.Interrupt(**i)` accepts: clients rebuild it from this."""
    if isinstance(interrupt, Interrupt):
        return {"id": interrupt.id, "value": interrupt.value}
    if isinstance(interrupt, dict):
        return {"id": interrupt.get("id"), "value": interrupt.get("value")}
    return {"id": getattr(interrupt, "id", None), "value": getattr(interrupt, "value", interrupt)}


def _error_text(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return f"{type(error).__name__}({error})"
    return str(error)


def task_wire(task: PregelTask) -> dict[str, Any]:
    state = task.state
    return {
        "id": task.id,
        "name": task.name,
        "path": task.path,
        "error": _error_text(task.error),
        "interrupts": [interrupt_wire(i) for i in task.interrupts],
        "checkpoint": task_checkpoint_wire(state) if isinstance(state, dict) else None,
        "state": thread_state_wire(state) if isinstance(state, StateSnapshot) else None,
        "result": task.result,
    }


def thread_state_wire(snapshot: StateSnapshot) -> dict[str, Any]:
    """The ThreadState object of §1.4, deprecated duplicates included."""
    checkpoint = checkpoint_wire(snapshot.config)
    parent = checkpoint_wire(snapshot.parent_config)
    return {
        "values": snapshot.values if snapshot.values is not None else {},
        "next": list(snapshot.next),
        "tasks": [task_wire(task) for task in snapshot.tasks],
        # RemoteGraph builds CheckpointMetadata(**metadata): never null.
        "metadata": snapshot.metadata or {},
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [interrupt_wire(i) for i in snapshot.interrupts],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def empty_thread_state() -> dict[str, Any]:
    """The state of a thread that has no graph or no checkpoint yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": None,
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


def select_state_fields(state: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Apply a ThreadState `select`: top-level fields, or `values.<key>` for single state keys."""
    if not select:
        return state
    out = {field: state[field] for field in select if field in state}
    keys = [field[len("values.") :] for field in select if field.startswith("values.")]
    if keys and "values" not in select and isinstance(state["values"], dict):
        out["values"] = {key: state["values"][key] for key in keys if key in state["values"]}
    return out
