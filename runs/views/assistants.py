"""Assistant endpoints (api-reference §1.2): validate, call one service, shape the output.

Path ids may be a UUID or a registered graph name (its default assistant).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.pagination import paginated_response
from agentserver.params import query_bool
from agentserver.validation import validated
from runs import assistants as service
from runs.serializers.assistants import (
    AssistantCreateSerializer,
    AssistantFilterSerializer,
    AssistantPatchSerializer,
    AssistantSearchSerializer,
    PageSerializer,
    SetLatestSerializer,
    assistant_data,
    parse_xray,
    version_data,
)

# OpenAPI shape of the list endpoints.
LIST_OF_OBJECTS = {"type": "array", "items": {"type": "object"}}


class AssistantCreateView(APIView):
    @extend_schema(request=AssistantCreateSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        fields = validated(AssistantCreateSerializer, request.data, null_is_absent=True)
        return Response(assistant_data(service.create_assistant(**fields)))


class AssistantSearchView(APIView):
    @extend_schema(request=AssistantSearchSerializer, responses={200: LIST_OF_OBJECTS})
    def post(self, request: Request) -> Response:
        query = validated(AssistantSearchSerializer, request.data, null_is_absent=True)
        select = query.pop("select", None)
        found, total = service.search_assistants(**query)
        return paginated_response(
            [assistant_data(assistant, select) for assistant in found],
            total=total,
            offset=query["offset"],
            limit=query["limit"],
        )


class AssistantCountView(APIView):
    @extend_schema(request=AssistantFilterSerializer, responses=OpenApiTypes.INT)
    def post(self, request: Request) -> Response:
        query = validated(AssistantFilterSerializer, request.data, null_is_absent=True)
        return Response(service.count_assistants(**query))


class AssistantDetailView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, assistant_id: str) -> Response:
        return Response(assistant_data(service.resolve_assistant(assistant_id)))

    @extend_schema(request=AssistantPatchSerializer, responses=OpenApiTypes.OBJECT)
    def patch(self, request: Request, assistant_id: str) -> Response:
        changes = validated(AssistantPatchSerializer, request.data, null_is_absent=True)
        return Response(assistant_data(service.update_assistant(assistant_id, changes)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, assistant_id: str) -> Response:
        delete_threads = query_bool(request.query_params, "delete_threads")
        service.delete_assistant(assistant_id, delete_threads=delete_threads)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AssistantGraphView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, assistant_id: str) -> Response:
        xray = parse_xray(request.query_params.get("xray"))
        assistant = service.resolve_assistant(assistant_id)
        return Response(service.draw_graph(assistant, xray))


class AssistantSchemasView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, assistant_id: str) -> Response:
        return Response(service.graph_schemas(service.resolve_assistant(assistant_id)))


class AssistantSubgraphsView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, assistant_id: str, namespace: str | None = None) -> Response:
        recurse = query_bool(request.query_params, "recurse")
        assistant = service.resolve_assistant(assistant_id)
        return Response(service.subgraph_schemas(assistant, namespace, recurse=recurse))


class AssistantVersionsView(APIView):
    @extend_schema(request=PageSerializer, responses={200: LIST_OF_OBJECTS})
    def post(self, request: Request, assistant_id: str) -> Response:
        query: dict[str, Any] = validated(PageSerializer, request.data, null_is_absent=True)
        versions = service.list_versions(assistant_id, **query)
        return Response([version_data(version) for version in versions])


class AssistantLatestView(APIView):
    @extend_schema(request=SetLatestSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, assistant_id: str) -> Response:
        version = validated(SetLatestSerializer, request.data, null_is_absent=True)["version"]
        return Response(assistant_data(service.set_latest_version(assistant_id, version)))
