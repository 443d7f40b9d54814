from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

from agentserver.renderers import dumps

NULL_CHARACTERS = "Null characters are not allowed."


def validated(
    serializer_class: type[serializers.Serializer], data: Any, *, null_is_absent: bool = False
) -> dict[str, Any]:
    """Validate a body (422 on failure) and return the known fields; unknown ones are dropped.

    ``null_is_absent``: top-level fields sent as ``null`` are treated as not sent, as the
    reference server does for its optional fields.
    """
    if null_is_absent:
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if value is not None}
        elif data is None:
            data = {}
    serializer = _bound_serializer(serializer_class, data)
    serializer.is_valid(raise_exception=True)
    result = dict(serializer.validated_data)
    reject_null_characters(result)
    return result


_reused = threading.local()


def _bound_serializer(serializer_class: type[serializers.Serializer], data: Any) -> serializers.Serializer:
    """A ``serializer_class`` instance bound to ``data``, one kept per thread and class.

    DRF deep-copies every declared field whenever a serializer is built: half of a run
    request's validation time. Our request serializers keep no state outside the instance
    (no context, no ``instance``), so a thread reuses its own and clears what ``is_valid``
    left on it.
    """
    by_class = _reused.__dict__.setdefault("by_class", {})
    serializer = by_class.get(serializer_class)
    if serializer is None:
        serializer = by_class[serializer_class] = serializer_class(data=data)
        return serializer
    for leftover in ("_validated_data", "_errors", "_data"):
        serializer.__dict__.pop(leftover, None)
    serializer.initial_data = data
    return serializer


def reject_null_characters(data: dict[str, Any]) -> None:
    """422 naming the field when a value holds U+0000 anywhere, in a key or a string.

    Postgres stores no NUL in text or jsonb, and every body ends up stored or used as a filter
    there, so such a value would fail deep inside the query. Only known (validated) fields count:
    unknown ones are ignored, not refused.
    """
    if b"\\u0000" not in dumps(data):  # fast path: JSON can only spell NUL as \u0000
        return
    for field, value in data.items():
        if _has_null_character(value):
            raise serializers.ValidationError({field: [NULL_CHARACTERS]})


def _has_null_character(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_null_character(k) or _has_null_character(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_null_character(item) for item in value)
    return False
