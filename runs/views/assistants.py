"""Assistant endpoints. (Foundation stubs: being implemented.)"""

from __future__ import annotations

from rest_framework.views import APIView


class AssistantCreateView(APIView):
    pass


class AssistantSearchView(APIView):
    pass


class AssistantCountView(APIView):
    pass


class AssistantDetailView(APIView):
    pass


class AssistantGraphView(APIView):
    pass


class AssistantSchemasView(APIView):
    pass


class AssistantSubgraphsView(APIView):
    pass


class AssistantVersionsView(APIView):
    pass


class AssistantLatestView(APIView):
    pass
