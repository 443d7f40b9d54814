"""Lenient query-string parsing, as the SDK and browsers encode parameters (api-reference §0)."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import QueryDict

from agentserver.errors import unprocessable

# Larger offsets, limits or versions would overflow the database's integers.
MAX_INT = 2**31 - 1
TRUE_VALUES = {"true", "1", "yes", "on"}
FALSE_VALUES = {"false", "0", "no", "off", ""}


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise unprocessable(f"Invalid value for {name}: {value!r} is not a boolean")


def query_bool(query: QueryDict, name: str, default: bool = False) -> bool:
    return parse_bool(query.get(name), name, default)


def query_list(query: QueryDict, name: str) -> list[str]:
    """Repeated keys, JSON arrays and comma lists all give the same list; empty values drop out."""
    items: list[str] = []
    for raw in query.getlist(name):
        raw = raw.strip()
        if raw.startswith("["):
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise unprocessable(f"Invalid value for {name}: {raw!r}") from None
            items.extend(str(item) for item in decoded if item)
        else:
            items.extend(part.strip() for part in raw.split(",") if part.strip())
    return items


def query_int(query: QueryDict, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise unprocessable(f"Invalid value for {name}: {raw!r} is not an integer") from None
    if value < minimum:
        raise unprocessable(f"Invalid value for {name}: must be >= {minimum}")
    if value > maximum:
        raise unprocessable(f"Invalid value for {name}: must be <= {maximum}")
    return value
