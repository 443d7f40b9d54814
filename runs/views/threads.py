"""Thread-level streams and the v2 protocol over HTTP (api-reference §2.7, §2.10). Thin.

Like the run streams, SSE bodies are async iterators returned from DRF views, so a
missing thread or a bad request is a JSON error before the stream starts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from asgiref.sync import async_to_sync
from django.db import close_old_connections
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.errors import bad_request, not_found, parse_uuid
from agentserver.events import normalise_last_id
from agentserver.openapi import LAST_EVENT_ID, SSE, errors
from agentserver.openapi import query_list as list_param
from agentserver.params import query_list
from agentserver.streaming import StreamingResponse
from runs.protocol import commands
from runs.protocol.source import EventFilter, InvalidFilter, parse_since, protocol_sse
from runs.streams import SSE_HEADERS
from runs.threadstream import THREAD_STREAM_MODES, parse_thread_modes, thread_sse
from threads.models import Thread


def _sse(body: AsyncGenerator[bytes, None], *, location: str | None = None) -> StreamingResponse:
    close_old_connections()  # the body outlives the view; it reads the database in short calls
    response = StreamingResponse(body, content_type="text/event-stream; charset=utf-8")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    if location:
        response["Location"] = location
    return response


# OpenAPI shapes of the protocol bodies (validated by runs.protocol, not by these).
COMMAND = inline_serializer(
    "ProtocolCommand",
    {
        "id": serializers.IntegerField(),
        "method": serializers.CharField(),
        "params": serializers.DictField(required=False),
    },
)
COMMAND_REPLY = inline_serializer(
    "ProtocolReply",
    {
        "type": serializers.ChoiceField(["success", "error"]),
        "id": serializers.JSONField(),  # echoes the command's id, whatever was sent
        "result": serializers.DictField(required=False),
        "error": serializers.CharField(required=False),
        "message": serializers.CharField(required=False),
    },
)
EVENT_FILTER = inline_serializer(
    "ProtocolEventFilter",
    {
        "channels": serializers.ListField(child=serializers.CharField(), min_length=1),
        "namespaces": serializers.ListField(
            child=serializers.ListField(child=serializers.CharField()), required=False, allow_null=True
        ),
        "depth": serializers.IntegerField(min_value=0, required=False, allow_null=True),
        "since": serializers.IntegerField(min_value=0, required=False, allow_null=True),
    },
)


def _existing_thread(thread_id: str) -> str:
    pk = parse_uuid(thread_id, "thread")
    if not Thread.objects.filter(pk=pk).exists():
        raise not_found(f"Thread with ID {pk} not found")
    return str(pk)


class ThreadStreamView(APIView):
    """GET /threads/{tid}/stream: every run of the thread, and thread events."""

    @extend_schema(
        operation_id="stream_thread",
        parameters=[
            list_param("stream_modes", "Thread stream modes (default run_modes).", enum=THREAD_STREAM_MODES),
            list_param("stream_mode", "The SDK's spelling of stream_modes.", enum=THREAD_STREAM_MODES),
            LAST_EVENT_ID,
        ],
        responses={**SSE, **errors(404, 422)},
    )
    def get(self, request: Request, thread_id: str) -> StreamingResponse:
        query = request.query_params
        modes = parse_thread_modes(query_list(query, "stream_modes") + query_list(query, "stream_mode"))
        pk = _existing_thread(thread_id)
        after = normalise_last_id(request.headers.get("Last-Event-ID"))
        return _sse(thread_sse(pk, modes=modes, after=after), location=request.get_full_path())


class ThreadCommandsView(APIView):
    """POST /threads/{tid}/commands: one protocol command, one JSON reply."""

    @extend_schema(
        operation_id="thread_command",
        request=COMMAND,
        responses={
            200: COMMAND_REPLY,
            400: OpenApiResponse(COMMAND_REPLY, description="Malformed command"),
            **errors(422),
        },
    )
    def post(self, request: Request, thread_id: str) -> Response:
        pk = str(parse_uuid(thread_id, "thread"))
        payload = request.data
        if not commands.is_command(payload):
            command_id = payload.get("id") if isinstance(payload, dict) else None
            return Response(commands.error(command_id, "invalid_argument", commands.MALFORMED), status=400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        return Response(async_to_sync(commands.handle_command)(pk, payload, headers=headers))


class ThreadEventsView(APIView):
    """POST /threads/{tid}/stream/events: protocol events as SSE, filtered, from ``since``."""

    @extend_schema(operation_id="stream_thread_events", request=EVENT_FILTER, responses={**SSE, **errors(400, 404, 422)})
    def post(self, request: Request, thread_id: str) -> StreamingResponse:
        body = request.data
        try:
            event_filter = EventFilter.parse(body)
            since = parse_since(body.get("since"))
        except InvalidFilter as exc:
            raise bad_request(str(exc)) from None
        pk = _existing_thread(thread_id)
        return _sse(protocol_sse(pk, event_filter, since))
