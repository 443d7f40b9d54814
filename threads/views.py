"""Thread, state and history endpoints (api-reference §1.3, §1.4): validate, call one service, shape."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.errors import parse_uuid
from agentserver.events import get_event_bus
from agentserver.openapi import HEADER, QUERY, errors, query_flag
from agentserver.openapi import query_int as int_param
from agentserver.openapi import query_list as list_param
from agentserver.pagination import paginated_response
from agentserver.params import query_bool, query_int, query_list
from agentserver.renderers import dumps
from agentserver.validation import validated
from threads import services, state
from threads.serializers import (
    STATE_SELECT_FIELDS,
    CheckpointWireSerializer,
    HistorySerializer,
    StateAtCheckpointSerializer,
    StateQuerySerializer,
    StateUpdateSerializer,
    ThreadCreateSerializer,
    ThreadFilterSerializer,
    ThreadPatchSerializer,
    ThreadPruneSerializer,
    ThreadSearchSerializer,
    ThreadSerializer,
    ThreadStateSerializer,
    select_state_fields,
    thread_wire,
)

logger = logging.getLogger(__name__)

# OpenAPI: the query parameters of the state reads.
STATE_QUERY = [
    query_flag("subgraphs", "Include the states of subgraphs."),
    list_param("select", f"ThreadState fields ({', '.join(STATE_SELECT_FIELDS)}) or values.<key>."),
]
STATE_RESPONSES = {200: ThreadStateSerializer, **errors(404, 422)}


def _state_select(request: Request) -> list[str]:
    """`?select=` of the state GETs (repeated keys, comma lists, JSON arrays), validated as in bodies."""
    select = query_list(request.query_params, "select")
    return validated(StateQuerySerializer, {"select": select})["select"]


class ThreadCreateView(APIView):
    @extend_schema(
        operation_id="create_thread",
        request=ThreadCreateSerializer,
        responses={200: ThreadSerializer, **errors(409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = validated(ThreadCreateSerializer, request.data)
        thread = services.create_thread(
            thread_id=data.get("thread_id"),
            metadata=data.get("metadata"),
            if_exists=data.get("if_exists"),
            ttl=data.get("ttl"),
            supersteps=data.get("supersteps"),
        )
        return Response(thread_wire(thread))


class ThreadSearchView(APIView):
    @extend_schema(
        operation_id="search_threads",
        request=ThreadSearchSerializer,
        responses={200: ThreadSerializer(many=True), **errors(422)},
    )
    def post(self, request: Request) -> Response:
        data = {k: v for k, v in validated(ThreadSearchSerializer, request.data).items() if v is not None}
        limit, offset = data.pop("limit", 10), data.pop("offset", 0)
        items, total = services.search_threads(limit=limit, offset=offset, **data)
        return paginated_response(items, total=total, offset=offset, limit=limit)


class ThreadCountView(APIView):
    @extend_schema(
        operation_id="count_threads",
        request=ThreadFilterSerializer,
        responses={200: OpenApiTypes.INT, **errors(422)},
    )
    def post(self, request: Request) -> Response:
        data = validated(ThreadFilterSerializer, request.data)
        return Response(services.count_threads(**data))


class ThreadPruneView(APIView):
    @extend_schema(
        operation_id="prune_threads",
        request=ThreadPruneSerializer,
        responses={
            200: inline_serializer("PruneResult", {"pruned_count": serializers.IntegerField()}),
            **errors(422),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(ThreadPruneSerializer, request.data)
        pruned = services.prune_threads(data["thread_ids"], data.get("strategy") or "delete")
        return Response({"pruned_count": pruned})


class ThreadDetailView(APIView):
    @extend_schema(
        operation_id="get_thread",
        parameters=[list_param("include", "Extra fields to include.", enum=["ttl"])],
        responses={200: ThreadSerializer, **errors(404, 422)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        include = query_list(request.query_params, "include")
        return Response(thread_wire(services.get_thread(thread_id), include_ttl="ttl" in include))

    @extend_schema(
        operation_id="patch_thread",
        request=ThreadPatchSerializer,
        parameters=[OpenApiParameter("Prefer", OpenApiTypes.STR, HEADER, enum=["return=minimal"])],
        responses={200: ThreadSerializer, 204: None, **errors(404, 422)},
    )
    def patch(self, request: Request, thread_id: str) -> Response:
        data = validated(ThreadPatchSerializer, request.data)
        thread = services.patch_thread(thread_id, metadata=data.get("metadata"), ttl=data.get("ttl"))
        if "return=minimal" in request.headers.get("Prefer", ""):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(thread_wire(thread))

    @extend_schema(operation_id="delete_thread", responses={204: None, **errors(404, 422)})
    def delete(self, request: Request, thread_id: str) -> Response:
        services.delete_thread(thread_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ThreadCopyView(APIView):
    @extend_schema(
        operation_id="copy_thread", request=None, responses={200: ThreadSerializer, **errors(404, 409, 422)}
    )
    def post(self, request: Request, thread_id: str) -> Response:
        return Response(thread_wire(services.copy_thread(thread_id)))


class ThreadStateView(APIView):
    @extend_schema(operation_id="get_thread_state", parameters=STATE_QUERY, responses=STATE_RESPONSES)
    def get(self, request: Request, thread_id: str) -> Response:
        return _state_response(request, thread_id)

    @extend_schema(
        operation_id="update_thread_state",
        request=StateUpdateSerializer,
        responses={
            200: inline_serializer("StateUpdateResult", {"checkpoint": CheckpointWireSerializer()}),
            **errors(400, 404, 409, 422),
        },
    )
    def post(self, request: Request, thread_id: str) -> Response:
        pk = parse_uuid(thread_id, "thread")
        data = validated(StateUpdateSerializer, request.data)
        result = state.update_state(
            pk,
            values=data.get("values"),
            as_node=data.get("as_node"),
            checkpoint=data.get("checkpoint"),
            checkpoint_id=data.get("checkpoint_id"),
        )
        _publish_state_update(pk)
        return Response(result)


class ThreadStateAtIdView(APIView):
    """The SDK's deprecated ``get_state(checkpoint_id=...)`` form."""

    @extend_schema(operation_id="get_thread_state_at_id", parameters=STATE_QUERY, responses=STATE_RESPONSES)
    def get(self, request: Request, thread_id: str, checkpoint_id: str) -> Response:
        return _state_response(request, thread_id, checkpoint_id=checkpoint_id)


class ThreadStateAtCheckpointView(APIView):
    @extend_schema(
        operation_id="get_thread_state_at_checkpoint",
        request=StateAtCheckpointSerializer,
        responses=STATE_RESPONSES,
    )
    def post(self, request: Request, thread_id: str) -> Response:
        thread = services.get_thread(thread_id)
        data = validated(StateAtCheckpointSerializer, request.data)
        result = state.get_state(thread, checkpoint=data["checkpoint"], subgraphs=data["subgraphs"])
        return Response(select_state_fields(result, data.get("select")))

    @extend_schema(
        operation_id="get_thread_state_at_id_checkpoint", parameters=STATE_QUERY, responses=STATE_RESPONSES
    )
    def get(self, request: Request, thread_id: str) -> Response:
        # A checkpoint literally named "checkpoint" is shadowed by this route; answer it anyway.
        return _state_response(request, thread_id, checkpoint_id="checkpoint")


class ThreadHistoryView(APIView):
    @extend_schema(
        operation_id="search_thread_history",
        request=HistorySerializer,
        responses={200: ThreadStateSerializer(many=True), **errors(404, 422)},
    )
    def post(self, request: Request, thread_id: str) -> Response:
        thread = services.get_thread(thread_id)
        data = validated(HistorySerializer, request.data)
        history = state.get_history(
            thread,
            limit=data.get("limit") or 1,
            before=data.get("before"),
            metadata=data.get("metadata"),
            checkpoint=data.get("checkpoint"),
        )
        return Response([select_state_fields(item, data.get("select")) for item in history])

    @extend_schema(
        operation_id="get_thread_history",
        parameters=[
            int_param("limit", "How many states (default 1).", minimum=1),
            OpenApiParameter("before", OpenApiTypes.STR, QUERY, description="Only states before this checkpoint id."),
            STATE_QUERY[1],
        ],
        responses={200: ThreadStateSerializer(many=True), **errors(404, 422)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        thread = services.get_thread(thread_id)
        limit = query_int(request.query_params, "limit", 1, minimum=1)
        before = request.query_params.get("before") or None
        history = state.get_history(thread, limit=limit, before=before)
        return Response([select_state_fields(item, _state_select(request)) for item in history])


def _publish_state_update(thread_id: uuid.UUID) -> None:
    """``state_update`` on the thread stream (api-reference §2.7), once the update is committed.

    Best effort: the update stands even if the notice cannot be sent.
    """
    try:
        payload = {"state": state.get_state(services.get_thread(thread_id)), "thread_id": str(thread_id)}
        get_event_bus().publish_thread(str(thread_id), "state_update", dumps(payload))
    except Exception:
        logger.exception("Could not publish the state update of thread %s", thread_id)


def _state_response(request: Request, thread_id: str, **at: Any) -> Response:
    thread = services.get_thread(thread_id)
    subgraphs = query_bool(request.query_params, "subgraphs")
    result = state.get_state(thread, subgraphs=subgraphs, **at)
    return Response(select_state_fields(result, _state_select(request)))
