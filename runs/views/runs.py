"""Run endpoints (api-reference §1.5, §1.6). Thin: validate, call a service, shape output.

Streaming responses (SSE, and the keep-alive bodies of /wait and /join) are returned
from ordinary DRF views with an async iterator: Django serves it on the event loop, and
any admission error is a normal JSON error before the stream starts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from django.db import close_old_connections
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.errors import not_found, parse_uuid, unprocessable
from agentserver.events import get_event_bus, normalise_last_id
from agentserver.openapi import ANY_JSON, LAST_EVENT_ID, QUERY, SSE, errors, query_flag
from agentserver.openapi import query_int as int_param
from agentserver.openapi import query_list as list_param
from agentserver.params import query_bool, query_int, query_list
from agentserver.rows import fetch_by_key
from agentserver.streaming import OutputResponse, StreamingResponse
from agentserver.validation import validated
from runs import services, streams
from runs.models import Run, RunStatus
from runs.serializers.runs import (
    RUN_FIELDS,
    STREAM_MODES,
    BulkCancelSerializer,
    RunSerializer,
    StatelessRunCreateSerializer,
    ThreadRunCreateSerializer,
    run_to_dict,
    select_fields,
)


def _headers(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _run_paths(run: Run, *, stateless: bool) -> tuple[str, str]:
    """(run path, its stream path) as the SDK parses them from Content-Location/Location."""
    base = f"/runs/{run.run_id}" if stateless else f"/threads/{run.thread_id}/runs/{run.run_id}"
    return base, f"{base}/stream"


def _release_connection() -> None:
    """A streamed response outlives its view: hand the database connection back now rather
    than when the stream ends (the body reads the database through its own short calls)."""
    close_old_connections()


def sse_response(body: AsyncGenerator[bytes, None], *, location: str, content_location: str | None = None) -> StreamingResponse:
    _release_connection()
    response = StreamingResponse(body, content_type="text/event-stream; charset=utf-8")
    for name, value in streams.SSE_HEADERS.items():
        response[name] = value
    response["Location"] = location
    if content_location:
        response["Content-Location"] = content_location
    return response


def output_response(body: AsyncGenerator[bytes, None], *, location: str, content_location: str | None = None) -> OutputResponse:
    _release_connection()
    response = OutputResponse(body, content_type="application/json")
    response["Location"] = location
    if content_location:
        response["Content-Location"] = content_location
    return response


def _create(request: Request, thread_id: str | None) -> tuple[Run, dict]:
    stateless = thread_id is None
    serializer = StatelessRunCreateSerializer if stateless else ThreadRunCreateSerializer
    data = validated(serializer, request.data)
    tid = None if stateless else parse_uuid(thread_id, "thread")
    run = services.create_run(data, thread_id=tid, headers=_headers(request), stateless=stateless)
    return run, data


# ------------------------------------------------------------------ create runs

# Run creation can fail as: bad body (422), both context and configurable (400), missing
# thread or assistant (404), busy thread with multitask_strategy=reject (409).
CREATE_ERRORS = errors(400, 404, 409, 422)
CANCEL_ACTION = OpenApiParameter(
    "action", OpenApiTypes.STR, QUERY, enum=["interrupt", "rollback"], description="What cancelling does."
)


class ThreadRunsView(APIView):
    @extend_schema(
        operation_id="create_run",
        request=ThreadRunCreateSerializer,
        responses={200: RunSerializer, **CREATE_ERRORS},
    )
    def post(self, request: Request, thread_id: str) -> Response:
        run, _ = _create(request, thread_id)
        response = Response(run_to_dict(run))
        response["Content-Location"] = _run_paths(run, stateless=False)[0]
        return response

    @extend_schema(
        operation_id="list_runs",
        parameters=[
            int_param("limit", "Page size (default 10).", minimum=1),
            int_param("offset", "Rows to skip (default 0)."),
            OpenApiParameter("status", OpenApiTypes.STR, QUERY, enum=RunStatus.values),
            list_param("select", "Run fields to return.", enum=RUN_FIELDS),
        ],
        responses={200: RunSerializer(many=True), **errors(404, 422)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        tid = parse_uuid(thread_id, "thread")
        query = request.query_params
        status = query.get("status") or None
        if status and status not in RunStatus.values:
            raise unprocessable(f"Invalid status {status!r}")
        runs = services.list_thread_runs(
            tid, limit=query_int(query, "limit", 10, minimum=1), offset=query_int(query, "offset", 0), status=status
        )
        select = [f for f in query_list(query, "select") if f in RUN_FIELDS]
        return Response([select_fields(run_to_dict(run), select) for run in runs])


class StatelessRunsView(APIView):
    @extend_schema(
        operation_id="create_stateless_run",
        request=StatelessRunCreateSerializer,
        responses={200: RunSerializer, **CREATE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        run, _ = _create(request, None)
        response = Response(run_to_dict(run))
        response["Content-Location"] = _run_paths(run, stateless=True)[0]
        return response


class BatchRunsView(APIView):
    @extend_schema(
        operation_id="create_runs_batch",
        request=StatelessRunCreateSerializer(many=True),
        responses={200: RunSerializer(many=True), **CREATE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        payloads = request.data
        if not isinstance(payloads, list) or not payloads:
            raise unprocessable("Body must be a non-empty array of run payloads")
        datas = [validated(StatelessRunCreateSerializer, payload) for payload in payloads]
        runs = [services.create_run(data, thread_id=None, headers=_headers(request), stateless=True) for data in datas]
        return Response([run_to_dict(run) for run in runs])


class StreamRunView(APIView):
    """POST …/runs/stream: admit the run, then relay its events as SSE from the first one."""

    stateless = False

    @extend_schema(
        operation_id="stream_run", request=ThreadRunCreateSerializer, responses={**SSE, **CREATE_ERRORS}
    )
    def post(self, request: Request, thread_id: str | None = None) -> StreamingResponse:
        run, data = _create(request, thread_id)
        run_path, stream_path = _run_paths(run, stateless=self.stateless)
        body = streams.sse_stream(
            str(run.run_id), after="0-0", with_ids=run.kwargs["resumable"],
            cancel_on_disconnect=data["on_disconnect"] == "cancel",
        )
        return sse_response(body, location=stream_path, content_location=run_path)


@extend_schema_view(post=extend_schema(operation_id="stream_stateless_run", request=StatelessRunCreateSerializer))
class StatelessStreamRunView(StreamRunView):
    stateless = True


class WaitRunView(APIView):
    """POST …/runs/wait: admit the run, then answer its final output (keep-alive newlines first)."""

    @extend_schema(
        operation_id="wait_run", request=ThreadRunCreateSerializer, responses={200: ANY_JSON, **CREATE_ERRORS}
    )
    def post(self, request: Request, thread_id: str | None = None) -> StreamingResponse:
        run, data = _create(request, thread_id)
        run_path = f"/threads/{run.thread_id}/runs/{run.run_id}"
        body = streams.output_stream(str(run.run_id), cancel_on_disconnect=data["on_disconnect"] == "cancel")
        return output_response(body, location=f"{run_path}/join", content_location=run_path)


@extend_schema_view(post=extend_schema(operation_id="wait_stateless_run", request=StatelessRunCreateSerializer))
class StatelessWaitRunView(WaitRunView):
    """POST /runs/wait: the same, for a stateless run."""


# ------------------------------------------------------------ existing runs


class RunDetailView(APIView):
    @extend_schema(operation_id="get_run", responses={200: RunSerializer, **errors(404, 422)})
    def get(self, request: Request, thread_id: str, run_id: str) -> Response:
        run = services.get_thread_run(parse_uuid(thread_id, "thread"), parse_uuid(run_id, "run"))
        return Response(run_to_dict(run))

    @extend_schema(operation_id="delete_run", responses={204: None, **errors(404, 422)})
    def delete(self, request: Request, thread_id: str, run_id: str) -> Response:
        services.delete_run(parse_uuid(thread_id, "thread"), parse_uuid(run_id, "run"))
        return Response(status=204)


class JoinRunView(APIView):
    """GET …/runs/{rid}/join: the final output, at once for a finished run."""

    @extend_schema(operation_id="join_run", responses={200: ANY_JSON, **errors(404, 422)})
    def get(self, request: Request, thread_id: str, run_id: str) -> StreamingResponse:
        run = services.get_thread_run(parse_uuid(thread_id, "thread"), parse_uuid(run_id, "run"))
        return _join_response(request, run)


def _join_response(request: Request, run: Run) -> StreamingResponse:
    location = f"/threads/{run.thread_id}/runs/{run.run_id}/join"
    if run.status in RunStatus.values and run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        output = services.run_output(run)

        async def finished() -> AsyncIterator[bytes]:
            yield streams.dumps(output)

        return output_response(finished(), location=location)
    body = streams.output_stream(str(run.run_id))
    return output_response(body, location=location)


class JoinStreamView(APIView):
    """GET …/runs/{rid}/stream: replay after ``Last-Event-ID`` (if given), then follow live."""

    @extend_schema(
        parameters=[
            list_param("stream_mode", "Only these stream modes.", enum=STREAM_MODES),
            query_flag("cancel_on_disconnect", "Cancel the run if the client goes away."),
            LAST_EVENT_ID,
        ],
        responses={**SSE, **errors(404, 422)},
    )
    def get(self, request: Request, run_id: str, thread_id: str | None = None) -> StreamingResponse:
        rid = parse_uuid(run_id, "run")
        key: dict[str, object] = {"run_id": rid}
        if thread_id is not None:
            key["thread_id"] = parse_uuid(thread_id, "thread")
        run = fetch_by_key(Run, **key)
        # A finished stateless run is gone from the database with its temporary thread,
        # but its retained events can still be replayed.
        if run is None and (thread_id is not None or not get_event_bus().has_run(str(rid))):
            raise not_found("Run not found")
        query = request.query_params
        last_id = request.headers.get("Last-Event-ID")
        body = streams.sse_stream(
            str(rid),
            after=normalise_last_id(last_id),
            with_ids=run is None or bool(run.kwargs.get("resumable")),
            modes=set(query_list(query, "stream_mode")),
            cancel_on_disconnect=query_bool(query, "cancel_on_disconnect"),
            replay=True,
        )
        return sse_response(body, location=request.get_full_path())


# ------------------------------------------------------------------- cancel


class CancelRunView(APIView):
    @extend_schema(
        operation_id="cancel_run",
        request=None,
        parameters=[query_flag("wait", "Wait for the run to stop and answer its output."), CANCEL_ACTION],
        responses={200: ANY_JSON, 202: None, **errors(404, 422)},
    )
    def post(self, request: Request, thread_id: str, run_id: str) -> Any:
        tid, rid = parse_uuid(thread_id, "thread"), parse_uuid(run_id, "run")
        query = request.query_params
        action = query.get("action") or "interrupt"
        services.cancel_runs(Run.objects.filter(pk=rid, thread_id=tid), action)
        if not query_bool(query, "wait"):
            _release_connection()
            return StreamingResponse(streams.until_stopped(str(rid)), status=202)
        run = fetch_by_key(Run, run_id=rid)
        if run is None:  # rolled back: nothing left to wait for
            return Response(None)
        return _join_response(request, run)


class BulkCancelView(APIView):
    @extend_schema(
        operation_id="cancel_runs",
        request=BulkCancelSerializer,
        parameters=[CANCEL_ACTION],
        responses={204: None, **errors(422)},
    )
    def post(self, request: Request) -> Response:
        data = validated(BulkCancelSerializer, request.data)
        action = request.query_params.get("action") or "interrupt"
        if data.get("status"):
            runs = Run.objects.all()
            if data["status"] != "all":
                runs = runs.filter(status=data["status"])
        else:
            runs = Run.objects.filter(thread_id=data["thread_id"], pk__in=data["run_ids"])
        services.cancel_runs(runs, action)
        return Response(status=204)

