"""orjson on the wire: faster than the stdlib and handles UUIDs and datetimes natively."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=ORJSON_OPTIONS)


def _default(value: Any) -> Any:
    # LangChain messages and other pydantic models, sets, and anything else with a dict form.
    if hasattr(value, "model_dump"):
        return value.model_dump()
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
