"""The OpenAPI document's shared pieces: the error body, path ids, common query and header
parameters, and the schema class that says our bodies are JSON.

Views annotate themselves with ``@extend_schema`` from these; nothing here runs per request.
"""

from __future__ import annotations

from typing import Any

import uritemplate
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from agentserver.params import MAX_INT

PATH, QUERY, HEADER = OpenApiParameter.PATH, OpenApiParameter.QUERY, OpenApiParameter.HEADER


class AutoSchema(SpectacularAutoSchema):
    """Our conventions, so views need not repeat them: request bodies are ``application/json``
    (the parser reads any content type as JSON, which spectacular would render as ``*/*``), and
    path variables are typed by name (``PATH_PARAMETERS``) rather than guessed as strings."""

    def map_parsers(self) -> list[str]:
        return ["application/json"]

    def get_override_parameters(self) -> list[Any]:
        in_path = [PATH_PARAMETERS[name] for name in uritemplate.variables(self.path) if name in PATH_PARAMETERS]
        return [*in_path, *super().get_override_parameters()]


class ErrorSerializer(serializers.Serializer):
    """The official error shape."""

    detail = serializers.CharField()


ERROR_TEXT = {
    400: "Bad request",
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
    500: "Dependency check failed",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """``responses`` entries for these error codes, all in the ``{"detail": ...}`` shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_TEXT[code]) for code in codes}


def path_id(name: str, description: str) -> OpenApiParameter:
    """A UUID path id (a malformed one is a 422)."""
    return OpenApiParameter(name, OpenApiTypes.UUID, PATH, description=description)


PATH_PARAMETERS = {
    "thread_id": path_id("thread_id", "The thread's UUID."),
    "run_id": path_id("run_id", "The run's UUID."),
    "assistant_id": OpenApiParameter(
        "assistant_id", OpenApiTypes.STR, PATH, description="An assistant UUID or a registered graph name."
    ),
    "checkpoint_id": OpenApiParameter("checkpoint_id", OpenApiTypes.STR, PATH, description="A checkpoint id."),
    "namespace": OpenApiParameter("namespace", OpenApiTypes.STR, PATH, description="A subgraph namespace."),
}


def query_flag(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.BOOL, QUERY, description=description)


def query_list(name: str, description: str, enum: Any = None) -> OpenApiParameter:
    """A list parameter: repeated keys (``a=x&a=y``); comma lists and JSON arrays also work."""
    return OpenApiParameter(name, OpenApiTypes.STR, QUERY, many=True, enum=enum, description=description)


def query_int(name: str, description: str, minimum: int = 0) -> OpenApiParameter:
    """An integer parameter, within the bounds ``agentserver.params.query_int`` enforces."""
    return OpenApiParameter(
        name, {"type": "integer", "minimum": minimum, "maximum": MAX_INT}, QUERY, description=description
    )


LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID", OpenApiTypes.STR, HEADER, description="Resume after this event id."
)

# Bodies of responses that are not fixed objects.
ANY_JSON = OpenApiTypes.ANY
LIST_OF_OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
# Before OpenAPI 3.2, the schema of an event stream describes each event.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
    "required": ["event", "data"],
}
SSE = {(200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description="Server-sent events, one JSON data line each")}
