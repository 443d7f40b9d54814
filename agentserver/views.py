"""System endpoints: health and server information (not behind auth)."""

from __future__ import annotations

import langgraph.version
from django.db import connection
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import agentserver
from agentserver.params import query_bool


class OkView(APIView):
    def get(self, request: Request) -> Response:
        if query_bool(request.query_params, "check_db"):
            try:
                connection.ensure_connection()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except Exception:
                return Response({"detail": "Database unavailable"}, status=500)
        return Response({"ok": True})


class InfoView(APIView):
    def get(self, request: Request) -> Response:
        return Response(
            {
                "version": agentserver.__version__,
                "langgraph_py_version": langgraph.version.__version__,
                "flags": {
                    "assistants": True,
                    "crons": False,
                    "langsmith": False,
                    "langsmith_tracing_replicas": False,
                    "langsmith_tracing_session_on_runs": False,
                },
                "host": {
                    "kind": "agentserver",
                    "project_id": None,
                    "host_revision_id": None,
                    "revision_id": None,
                    "tenant_id": None,
                },
            }
        )
