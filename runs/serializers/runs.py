"""Request validation and the wire shape of runs (api-reference §1.5, §1.6).

Unknown request fields are ignored (the SDK sends ``strict_resume`` and
``langsmith_tracer``); a present ``null`` counts as absent.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runs.models import Run, RunStatus

STREAM_MODES = (
    "values", "messages", "messages-tuple", "updates", "events", "tasks", "checkpoints", "debug", "custom",
)
V2_ONLY_MODES = ("tools", "lifecycle")
RUN_FIELDS = (
    "run_id", "thread_id", "assistant_id", "created_at", "updated_at", "status", "metadata", "kwargs",
    "multitask_strategy",
)


@extend_schema_field({"type": "object", "additionalProperties": True})
class ObjectField(serializers.JSONField):
    """A JSON object; ``null`` reads as absent."""

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return data


_STREAM_MODE_SCHEMA = {"type": "string", "enum": list(STREAM_MODES)}


@extend_schema_field({"oneOf": [_STREAM_MODE_SCHEMA, {"type": "array", "items": _STREAM_MODE_SCHEMA}]})
class StreamModeField(serializers.Field):
    """One mode or a list of modes; v2-protocol-only modes are refused here."""

    def to_internal_value(self, data: Any) -> list[str]:
        modes = [data] if isinstance(data, str) else data
        if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
            raise serializers.ValidationError("Must be a stream mode or a list of stream modes.")
        v2_only = [m for m in modes if m in V2_ONLY_MODES]
        if v2_only:
            raise serializers.ValidationError(
                f"stream_mode entries {v2_only} are only supported on the v2 event streaming endpoints."
            )
        unknown = [m for m in modes if m not in STREAM_MODES]
        if unknown:
            raise serializers.ValidationError(f"Unknown stream modes {unknown}; expected some of {list(STREAM_MODES)}.")
        return list(dict.fromkeys(modes)) or ["values"]

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["*"]}, {"type": "array", "items": {"type": "string"}}]})
class BreakpointsField(serializers.Field):
    """``"*"`` or a list of node names."""

    def to_internal_value(self, data: Any) -> str | list[str]:
        if data == "*":
            return data
        if isinstance(data, list) and all(isinstance(node, str) for node in data):
            return data
        raise serializers.ValidationError('Must be "*" or a list of node names.')

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "string", "minLength": 1, "description": "An assistant UUID or a graph name."})
class AssistantRefField(serializers.JSONField):
    """Any JSON on the way in, so that a non-string gets our message rather than DRF's coercion."""


class CommandSerializer(serializers.Serializer):
    resume = serializers.JSONField(required=False, allow_null=True)
    update = serializers.JSONField(required=False, allow_null=True)
    goto = serializers.JSONField(required=False, allow_null=True)

    def validate_update(self, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
            return value
        raise serializers.ValidationError("Must be an object or a list of [key, value] pairs.")

    def validate_goto(self, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if value is None or isinstance(item, str):
                continue
            if not (isinstance(item, dict) and isinstance(item.get("node"), str)):
                raise serializers.ValidationError('Must be a node name, a Send {"node", "input"} or a list of them.')
        return value


class CheckpointSerializer(serializers.Serializer):
    checkpoint_id = serializers.CharField(required=False, allow_null=True)
    checkpoint_ns = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    checkpoint_map = serializers.DictField(required=False, allow_null=True)
    thread_id = serializers.CharField(required=False, allow_null=True)


class RunCreateSerializer(serializers.Serializer):
    """Fields shared by stateful and stateless run creation."""

    assistant_id = AssistantRefField()
    input = serializers.JSONField(required=False, allow_null=True, default=None)
    command = CommandSerializer(required=False, allow_null=True, default=None)
    metadata = ObjectField(required=False, allow_null=True, default=dict)
    config = ObjectField(required=False, allow_null=True, default=dict)
    context = ObjectField(required=False, allow_null=True, default=dict)
    stream_mode = StreamModeField(required=False, allow_null=True, default=None)
    stream_subgraphs = serializers.BooleanField(required=False, allow_null=True, default=False)
    stream_resumable = serializers.BooleanField(required=False, allow_null=True, default=False)
    interrupt_before = BreakpointsField(required=False, allow_null=True, default=None)
    interrupt_after = BreakpointsField(required=False, allow_null=True, default=None)
    webhook = serializers.CharField(required=False, allow_null=True, default=None, max_length=4096)
    feedback_keys = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    after_seconds = serializers.FloatField(required=False, allow_null=True, default=0, min_value=0, max_value=86400)
    on_disconnect = serializers.ChoiceField(("cancel", "continue"), required=False, allow_null=True, default="continue")
    durability = serializers.ChoiceField(("sync", "async", "exit"), required=False, allow_null=True, default=None)
    checkpoint_during = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate_assistant_id(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise serializers.ValidationError("Must be an assistant UUID or a graph name.")
        return value

    def validate(self, attrs: dict) -> dict:
        for key in ("metadata", "config", "context"):
            attrs[key] = attrs.get(key) or {}
        attrs["stream_mode"] = attrs.get("stream_mode") or ["values"]
        attrs["after_seconds"] = attrs.get("after_seconds") or 0
        attrs["on_disconnect"] = attrs.get("on_disconnect") or "continue"
        if attrs.get("durability") is None and attrs.get("checkpoint_during") is not None:
            attrs["durability"] = "async" if attrs["checkpoint_during"] else "exit"
        return attrs


class ThreadRunCreateSerializer(RunCreateSerializer):
    checkpoint = CheckpointSerializer(required=False, allow_null=True, default=None)
    checkpoint_id = serializers.CharField(required=False, allow_null=True, default=None)
    multitask_strategy = serializers.ChoiceField(
        ("reject", "interrupt", "rollback", "enqueue"), required=False, allow_null=True, default="enqueue"
    )
    if_not_exists = serializers.ChoiceField(("create", "reject"), required=False, allow_null=True, default="reject")

    def validate_checkpoint_id(self, value: str | None) -> str | None:
        if value is not None:
            try:
                uuid.UUID(value)
            except ValueError:
                raise serializers.ValidationError("Must be a UUID.") from None
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        attrs["multitask_strategy"] = attrs.get("multitask_strategy") or "enqueue"
        attrs["if_not_exists"] = attrs.get("if_not_exists") or "reject"
        return attrs


class StatelessRunCreateSerializer(RunCreateSerializer):
    on_completion = serializers.ChoiceField(("delete", "keep"), required=False, allow_null=True, default="delete")

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        attrs["on_completion"] = attrs.get("on_completion") or "delete"
        return attrs


class BulkCancelSerializer(serializers.Serializer):
    thread_id = serializers.UUIDField(required=False, allow_null=True)
    run_ids = serializers.ListField(child=serializers.UUIDField(), required=False, allow_null=True)
    status = serializers.ChoiceField(("pending", "running", "all"), required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        by_ids = attrs.get("thread_id") is not None or attrs.get("run_ids") is not None
        if by_ids and attrs.get("status"):
            raise serializers.ValidationError("Give either thread_id and run_ids, or status, not both.")
        if not by_ids and not attrs.get("status"):
            raise serializers.ValidationError("Give thread_id and run_ids, or status.")
        if by_ids and (attrs.get("thread_id") is None or not attrs.get("run_ids")):
            raise serializers.ValidationError("thread_id and run_ids go together.")
        return attrs


class RunSerializer(serializers.Serializer):
    """The Run object (documents ``run_to_dict``; ``select`` may return a subset)."""

    run_id = serializers.UUIDField(required=False)
    thread_id = serializers.UUIDField(required=False)
    assistant_id = serializers.UUIDField(required=False)
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)
    status = serializers.ChoiceField(RunStatus.values, required=False)
    metadata = serializers.DictField(required=False)
    kwargs = serializers.DictField(required=False)
    multitask_strategy = serializers.CharField(required=False, allow_null=True)


def run_to_dict(run: Run) -> dict[str, Any]:
    """The Run object of the wire contract."""
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "status": run.status,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
    }


def select_fields(data: dict[str, Any], select: list[str]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key in select} if select else data
