from __future__ import annotations

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class ORJSONParser(BaseParser):
    """Parses JSON bodies; an empty body is an empty object, as the reference server treats it."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        if not body or not body.strip():
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ParseError("Invalid JSON in request body") from None
