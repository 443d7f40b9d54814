"""JSON containment filters (``metadata @> {...}``) that work on every database we support."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import JSONField, Q, Value
from django.db.models.fields.json import KeyTransform


def json_contains(field: str, value: dict[str, Any]) -> Q:
    """``field @> value`` as a filter: jsonb containment where the database has it.

    SQLite has no containment operator, so there objects are matched key by key
    (recursively) and every other value must be equal. Keys are KeyTransforms, not
    ``field__key`` lookups, so a key such as "contains" or "a__b" is matched literally.
    """
    if connection.features.supports_json_field_contains:
        return Q(**{f"{field}__contains": value})
    return _key_by_key(field, value)


def _key_by_key(lhs: Any, value: dict[str, Any]) -> Q:
    condition = Q()
    for key, item in value.items():
        path = KeyTransform(str(key), lhs)
        if isinstance(item, dict) and item:
            condition &= _key_by_key(path, item)
        else:
            condition &= Q(path.get_lookup("exact")(path, Value(item, output_field=JSONField())))
    return condition
