"""Assistant endpoints (api-reference §1.2): validate, call one service, shape the output.

Path ids may be a UUID or a registered graph name (its default assistant).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agentserver.openapi import QUERY, errors, query_flag
from agentserver.pagination import paginated_response
from agentserver.params import query_bool
from agentserver.validation import validated
from runs import assistants as service
from runs.serializers.assistants import (
    AssistantCreateSerializer,
    AssistantFilterSerializer,
    AssistantPatchSerializer,
    AssistantSearchSerializer,
    AssistantSerializer,
    AssistantVersionSerializer,
    PageSerializer,
    SetLatestSerializer,
    assistant_data,
    parse_xray,
    version_data,
)

# OpenAPI: an assistant, or why there is none.
ASSISTANT = {200: AssistantSerializer, **errors(404, 422)}
GRAPH_ERRORS = errors(404, 422)


class AssistantCreateView(APIView):
    @extend_schema(
        operation_id="create_assistant",
        request=AssistantCreateSerializer,
        responses={**ASSISTANT, **errors(409)},
    )
    def post(self, request: Request) -> Response:
        fields = validated(AssistantCreateSerializer, request.data, null_is_absent=True)
        return Response(assistant_data(service.create_assistant(**fields)))


class AssistantSearchView(APIView):
    @extend_schema(
        operation_id="search_assistants",
        request=AssistantSearchSerializer,
        responses={200: AssistantSerializer(many=True), **errors(404, 422)},
    )
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
    @extend_schema(
        operation_id="count_assistants",
        request=AssistantFilterSerializer,
        responses={200: OpenApiTypes.INT, **errors(422)},
    )
    def post(self, request: Request) -> Response:
        query = validated(AssistantFilterSerializer, request.data, null_is_absent=True)
        return Response(service.count_assistants(**query))


class AssistantDetailView(APIView):
    @extend_schema(operation_id="get_assistant", responses=ASSISTANT)
    def get(self, request: Request, assistant_id: str) -> Response:
        return Response(assistant_data(service.resolve_assistant(assistant_id)))

    @extend_schema(operation_id="patch_assistant", request=AssistantPatchSerializer, responses=ASSISTANT)
    def patch(self, request: Request, assistant_id: str) -> Response:
        changes = validated(AssistantPatchSerializer, request.data, null_is_absent=True)
        return Response(assistant_data(service.update_assistant(assistant_id, changes)))

    @extend_schema(
        operation_id="delete_assistant",
        parameters=[query_flag("delete_threads", "Also delete the assistant's threads.")],
        responses={204: None, **errors(404, 422)},
    )
    def delete(self, request: Request, assistant_id: str) -> Response:
        delete_threads = query_bool(request.query_params, "delete_threads")
        service.delete_assistant(assistant_id, delete_threads=delete_threads)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AssistantGraphView(APIView):
    @extend_schema(
        operation_id="get_assistant_graph",
        parameters=[
            OpenApiParameter(
                "xray", OpenApiTypes.STR, QUERY, pattern=r"^(true|false|\d+)$",
                description="true, false, or how many levels of subgraphs to expand.",
            )
        ],
        responses={200: OpenApiTypes.OBJECT, **GRAPH_ERRORS},
    )
    def get(self, request: Request, assistant_id: str) -> Response:
        xray = parse_xray(request.query_params.get("xray"))
        assistant = service.resolve_assistant(assistant_id)
        return Response(service.draw_graph(assistant, xray))


class AssistantSchemasView(APIView):
    @extend_schema(operation_id="get_assistant_schemas", responses={200: OpenApiTypes.OBJECT, **GRAPH_ERRORS})
    def get(self, request: Request, assistant_id: str) -> Response:
        return Response(service.graph_schemas(service.resolve_assistant(assistant_id)))


class AssistantSubgraphsView(APIView):
    @extend_schema(
        operation_id="get_assistant_subgraphs",
        parameters=[query_flag("recurse", "Include subgraphs of subgraphs.")],
        responses={200: OpenApiTypes.OBJECT, **GRAPH_ERRORS},
    )
    def get(self, request: Request, assistant_id: str, namespace: str | None = None) -> Response:
        recurse = query_bool(request.query_params, "recurse")
        assistant = service.resolve_assistant(assistant_id)
        return Response(service.subgraph_schemas(assistant, namespace, recurse=recurse))


@extend_schema_view(get=extend_schema(operation_id="get_assistant_subgraphs_at_namespace"))
class AssistantNamespaceSubgraphsView(AssistantSubgraphsView):
    """The same, for the subgraphs under one namespace."""


class AssistantVersionsView(APIView):
    @extend_schema(
        operation_id="list_assistant_versions",
        request=PageSerializer,
        responses={200: AssistantVersionSerializer(many=True), **errors(404, 422)},
    )
    def post(self, request: Request, assistant_id: str) -> Response:
        query: dict[str, Any] = validated(PageSerializer, request.data, null_is_absent=True)
        versions = service.list_versions(assistant_id, **query)
        return Response([version_data(version) for version in versions])


class AssistantLatestView(APIView):
    @extend_schema(operation_id="set_latest_assistant_version", request=SetLatestSerializer, responses=ASSISTANT)
    def post(self, request: Request, assistant_id: str) -> Response:
        version = validated(SetLatestSerializer, request.data, null_is_absent=True)["version"]
        return Response(assistant_data(service.set_latest_version(assistant_id, version)))
