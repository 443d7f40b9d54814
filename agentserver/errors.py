"""The official error shape, ``{"detail": "..."}``, for every failure the API reports.

Schema violations and unparsable JSON are 422 (the reference server's codes), not DRF's 400.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class APIError(exceptions.APIException):
    """An error with an explicit status and detail message."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


def not_found(detail: str) -> APIError:
    return APIError(status.HTTP_404_NOT_FOUND, detail)


def conflict(detail: str) -> APIError:
    return APIError(status.HTTP_409_CONFLICT, detail)


def bad_request(detail: str) -> APIError:
    return APIError(status.HTTP_400_BAD_REQUEST, detail)


def unprocessable(detail: str) -> APIError:
    return APIError(status.HTTP_422_UNPROCESSABLE_ENTITY, detail)


def parse_uuid(value: Any, thing: str) -> uuid.UUID:
    """Parse a path or body id; a malformed one is the reference's 422."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise unprocessable(f"Invalid {thing} ID: must be a UUID") from None


def flatten_validation_errors(errors: Any, prefix: str = "") -> str:
    """Turn DRF's nested error dict into one readable line."""
    if isinstance(errors, dict):
        parts = [
            flatten_validation_errors(value, f"{prefix}.{key}" if prefix else str(key))
            for key, value in errors.items()
        ]
        return "; ".join(part for part in parts if part)
    if isinstance(errors, list):
        if all(not isinstance(e, (dict, list)) for e in errors):
            text = " ".join(str(e) for e in errors)
            return f"{prefix}: {text}" if prefix and prefix != "non_field_errors" else text
        return "; ".join(
            flatten_validation_errors(e, f"{prefix}[{i}]" if prefix else f"[{i}]")
            for i, e in enumerate(errors)
            if e
        )
    return f"{prefix}: {errors}" if prefix else str(errors)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": "Invalid JSON in request body"}, status=422)
    if isinstance(exc, exceptions.ValidationError):
        return Response({"detail": flatten_validation_errors(exc.detail)}, status=422)
    if isinstance(exc, Http404):
        return Response({"detail": str(exc) or "Not Found"}, status=404)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response({"detail": "Method Not Allowed"}, status=405)
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        if not isinstance(detail, str):
            detail = flatten_validation_errors(detail)
        return Response({"detail": str(detail)}, status=exc.status_code)
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    return Response({"detail": "Internal Server Error"}, status=500)


def error_response(status_code: int, detail: str) -> JsonResponse:
    """The error shape for plain (non-DRF) views such as SSE endpoints."""
    return JsonResponse({"detail": detail}, status=status_code)


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "Not Found")


def server_error_view(request: HttpRequest) -> JsonResponse:
    return error_response(500, "Internal Server Error")
