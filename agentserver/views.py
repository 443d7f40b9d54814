"""System endpoints: health and server information (not behind auth)."""

from __future__ import annotations

import langgraph.version
from django.db import connection
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import agentserver
from agentserver.openapi import errors, query_flag
from agentserver.params import query_bool


class OkView(APIView):
    # Served at both / and /ok: the operation ids come from the paths.
    @extend_schema(
        parameters=[query_flag("check_db", "Also check the database connection.")],
        responses={200: inline_serializer("Ok", {"ok": serializers.BooleanField()}), **errors(422, 500)},
    )
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
    @extend_schema(operation_id="get_info", responses={200: OpenApiTypes.OBJECT})
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
