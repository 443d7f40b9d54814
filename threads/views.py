"""Thread, state and history endpoints (api-reference §1.3, §1.4): validate, call one service, shape."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.errors import parse_uuid
from agentserver.events import get_event_bus
from agentserver.pagination import paginated_response
from agentserver.params import query_bool, query_int, query_list
from agentserver.renderers import dumps
from agentserver.validation import validated
from threads import services, state
from threads.serializers import (
    HistorySerializer,
    StateAtCheckpointSerializer,
    StateQuerySerializer,
    StateUpdateSerializer,
    ThreadCreateSerializer,
    ThreadFilterSerializer,
    ThreadPatchSerializer,
    ThreadPruneSerializer,
    ThreadSearchSerializer,
    select_state_fields,
    thread_wire,
)

logger = logging.getLogger(__name__)


def _state_select(request: Request) -> list[str]:
    """`?select=` of the state GETs (repeated keys, comma lists, JSON arrays), validated as in bodies."""
    select = query_list(request.query_params, "select")
    return validated(StateQuerySerializer, {"select": select})["select"]


class ThreadCreateView(APIView):
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
    def post(self, request: Request) -> Response:
        data = {k: v for k, v in validated(ThreadSearchSerializer, request.data).items() if v is not None}
        limit, offset = data.pop("limit", 10), data.pop("offset", 0)
        items, total = services.search_threads(limit=limit, offset=offset, **data)
        return paginated_response(items, total=total, offset=offset, limit=limit)


class ThreadCountView(APIView):
    def post(self, request: Request) -> Response:
        data = validated(ThreadFilterSerializer, request.data)
        return Response(services.count_threads(**data))


class ThreadPruneView(APIView):
    def post(self, request: Request) -> Response:
        data = validated(ThreadPruneSerializer, request.data)
        pruned = services.prune_threads(data["thread_ids"], data.get("strategy") or "delete")
        return Response({"pruned_count": pruned})


class ThreadDetailView(APIView):
    def get(self, request: Request, thread_id: str) -> Response:
        include = query_list(request.query_params, "include")
        return Response(thread_wire(services.get_thread(thread_id), include_ttl="ttl" in include))

    def patch(self, request: Request, thread_id: str) -> Response:
        data = validated(ThreadPatchSerializer, request.data)
        thread = services.patch_thread(thread_id, metadata=data.get("metadata"), ttl=data.get("ttl"))
        if "return=minimal" in request.headers.get("Prefer", ""):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(thread_wire(thread))

    def delete(self, request: Request, thread_id: str) -> Response:
        services.delete_thread(thread_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ThreadCopyView(APIView):
    def post(self, request: Request, thread_id: str) -> Response:
        return Response(thread_wire(services.copy_thread(thread_id)))


class ThreadStateView(APIView):
    def get(self, request: Request, thread_id: str) -> Response:
        return _state_response(request, thread_id)

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

    def get(self, request: Request, thread_id: str, checkpoint_id: str) -> Response:
        return _state_response(request, thread_id, checkpoint_id=checkpoint_id)


class ThreadStateAtCheckpointView(APIView):
    def post(self, request: Request, thread_id: str) -> Response:
        thread = services.get_thread(thread_id)
        data = validated(StateAtCheckpointSerializer, request.data)
        result = state.get_state(thread, checkpoint=data["checkpoint"], subgraphs=data["subgraphs"])
        return Response(select_state_fields(result, data.get("select")))

    def get(self, request: Request, thread_id: str) -> Response:
        # A checkpoint literally named "checkpoint" is shadowed by this route; answer it anyway.
        return _state_response(request, thread_id, checkpoint_id="checkpoint")


class ThreadHistoryView(APIView):
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
