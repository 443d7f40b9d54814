from __future__ import annotations

from typing import Any

from rest_framework.response import Response


def paginated_response(items: list[Any], *, total: int, offset: int, limit: int) -> Response:
    """Search results with the reference's pagination headers."""
    response = Response(items)
    response["X-Pagination-Total"] = str(total)
    if offset + len(items) < total:
        response["X-Pagination-Next"] = str(offset + limit)
    return response
