"""Request validation and the wire shape of assistants (api-reference §1.2).

Unknown request fields are ignored; a present ``null`` counts as absent, as the
reference's optional fields do.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agentserver.errors import unprocessable
from agentserver.params import MAX_INT, TRUE_VALUES
from runs.assistants import SORT_FIELDS
from runs.models import Assistant, AssistantVersion

ASSISTANT_FIELDS = (
    "assistant_id",
    "graph_id",
    "config",
    "context",
    "metadata",
    "name",
    "description",
    "version",
    "created_at",
    "updated_at",
)


class StrictCharField(serializers.CharField):
    """A string and only a string: DRF would otherwise turn ``123`` into ``"123"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": True})
class ObjectField(serializers.JSONField):
    """A JSON object (not a list, string or number); ``validated`` refuses NUL characters in it."""

    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_object")
        return data


# Types of the RunnableConfig keys an assistant may set; other keys pass through.
CONFIG_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "tags": (list,),
    "metadata": (dict,),
    "configurable": (dict,),
    "recursion_limit": (int,),
    "max_concurrency": (int,),
    "run_name": (str,),
}


class ConfigField(ObjectField):
    """A RunnableConfig: the reference answers a malformed one with 422."""

    def to_internal_value(self, data: Any) -> dict:
        config = super().to_internal_value(data)
        for key, types in CONFIG_KEY_TYPES.items():
            value = config.get(key)
            if value is None:
                continue
            if not isinstance(value, types) or isinstance(value, bool):
                raise serializers.ValidationError(f"{key} must be of type {types[0].__name__}")
        if any(not isinstance(tag, str) for tag in config.get("tags") or []):
            raise serializers.ValidationError("tags must be a list of strings")
        return config


class AssistantIdField(serializers.UUIDField):
    def to_internal_value(self, data: Any) -> uuid.UUID:
        try:
            return uuid.UUID(str(data))
        except ValueError:
            raise serializers.ValidationError("Invalid assistant ID: must be a UUID") from None


class AssistantFieldsSerializer(serializers.Serializer):
    """The fields a create or a patch may set."""

    graph_id = StrictCharField(max_length=255)
    config = ConfigField(required=False)
    context = ObjectField(required=False)
    metadata = ObjectField(required=False)
    name = StrictCharField(required=False, allow_blank=True, max_length=255)
    description = StrictCharField(required=False, allow_blank=True, allow_null=True)


class AssistantCreateSerializer(AssistantFieldsSerializer):
    assistant_id = AssistantIdField(required=False)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False)


class AssistantPatchSerializer(AssistantFieldsSerializer):
    graph_id = StrictCharField(max_length=255, required=False)


class PageSerializer(serializers.Serializer):
    metadata = ObjectField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_INT, default=0)


class AssistantFilterSerializer(serializers.Serializer):
    metadata = ObjectField(required=False)
    graph_id = StrictCharField(required=False, allow_blank=True)
    name = StrictCharField(required=False, allow_blank=True)


class AssistantSearchSerializer(PageSerializer, AssistantFilterSerializer):
    sort_by = serializers.ChoiceField(choices=SORT_FIELDS, required=False)
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False, allow_empty=True
    )


class SetLatestSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)


class AssistantSerializer(serializers.Serializer):
    """The Assistant object (documents ``assistant_data``; ``select`` may return a subset)."""

    assistant_id = serializers.UUIDField(required=False)
    graph_id = serializers.CharField(required=False)
    config = serializers.DictField(required=False)
    context = serializers.DictField(required=False)
    metadata = serializers.DictField(required=False)
    name = serializers.CharField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    version = serializers.IntegerField(required=False)
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)


class AssistantVersionSerializer(AssistantSerializer):
    """One version of an assistant (no ``updated_at``)."""

    updated_at = None


def parse_xray(raw: str | None) -> bool | int:
    """``xray`` is a boolean or a positive depth; anything else is a 422."""
    text = (raw or "").strip()
    if text.lower() in TRUE_VALUES - {"1"}:
        return True
    if text.lower() in {"", "false", "no", "off"}:
        return False
    if text.isdigit():
        return int(text)  # "0" means no expansion, as False does
    raise unprocessable(f"Invalid xray value: {raw!r}. Must be true, false or a positive integer")


def assistant_data(assistant: Assistant, select: list[str] | None = None) -> dict[str, Any]:
    data = {
        "assistant_id": str(assistant.assistant_id),
        "graph_id": assistant.graph_id,
        "config": assistant.config,
        "context": assistant.context,
        "metadata": assistant.metadata,
        "name": assistant.name,
        "description": assistant.description,
        "version": assistant.version,
        "created_at": assistant.created_at,
        "updated_at": assistant.updated_at,
    }
    if select:
        return {field: data[field] for field in ASSISTANT_FIELDS if field in select}
    return data


def version_data(version: AssistantVersion) -> dict[str, Any]:
    return {
        "assistant_id": str(version.assistant_id),
        "graph_id": version.graph_id,
        "config": version.config,
        "context": version.context,
        "metadata": version.metadata,
        "name": version.name,
        "description": version.description,
        "version": version.version,
        "created_at": version.created_at,
    }
