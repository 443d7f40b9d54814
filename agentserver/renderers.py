"""orjson on the wire: faster than the stdlib and handles UUIDs and datetimes natively."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=ORJSON_OPTIONS)


def to_jsonable(data: Any) -> Any:
    """Plain JSON types for a JSONField (messages, interrupts... become dicts)."""
    return orjson.loads(dumps(data))


def _default(value: Any) -> Any:
    # LangChain messages and other pydantic models, dataclasses such as langgraph's
    # Interrupt (slotted, so no __dict__), sets, and anything else with a dict form.
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None and renderer_context and renderer_context["response"].status_code == 204:
            return b""
        return dumps(data)


class JSONOnlyNegotiation(BaseContentNegotiation):
    """The API answers JSON whatever the Accept header says: SSE clients send
    ``Accept: text/event-stream`` and must still get JSON errors before a stream starts."""

    def select_parser(self, request: Any, parsers: list) -> Any:
        return parsers[0]

    def select_renderer(self, request: Any, renderers: list, format_suffix: str | None = None) -> tuple:
        renderer = renderers[0]
        return renderer, renderer.media_type
