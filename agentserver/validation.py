from __future__ import annotations

from typing import Any

from rest_framework import serializers


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
    return dict(serializer.validated_data)
