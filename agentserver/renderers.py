"""orjson on the wire: faster than the stdlib and handles UUIDs and datetimes natively."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data, default=_default, option=ORJSON_OPTIONS)
    except TypeError as exc:
        if str(exc) != "Integer exceeds 64-bit range":
            raise
        # Postgres jsonb keeps numbers as numerics: a request's 1e30 is read back as the Python
        # int 10**30, past what orjson writes. JSON has no such limit: write it exactly.
        return orjson.dumps(_big_ints_as_fragments(data), default=_default, option=ORJSON_OPTIONS)


_INT_RANGE = range(-(2**63), 2**64)


def _big_ints_as_fragments(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {key: _big_ints_as_fragments(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_fragments(item) for item in value]
    return value


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
