from __future__ import annotations

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
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    result = dict(serializer.validated_data)
    reject_null_characters(result)
    return result


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
