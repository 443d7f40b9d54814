"""Run endpoints. (Stubs: being implemented.)"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from rest_framework.views import APIView

from agentserver.errors import error_response


class ThreadRunsView(APIView):
    pass


class RunDetailView(APIView):
    pass


class StatelessRunsView(APIView):
    pass


class BatchRunsView(APIView):
    pass


class BulkCancelView(APIView):
    pass


async def _not_yet(request: HttpRequest, **kwargs: str) -> HttpResponse:
    return error_response(501, "Not implemented yet")


stream_thread_run = wait_thread_run = join_run = join_run_stream = cancel_run = _not_yet
stream_stateless_run = wait_stateless_run = join_stateless_run_stream = _not_yet
