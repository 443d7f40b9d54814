"""Thread, state and history endpoints. (Foundation stubs: being implemented.)"""

from __future__ import annotations

from rest_framework.views import APIView


class ThreadCreateView(APIView):
    pass


class ThreadSearchView(APIView):
    pass


class ThreadCountView(APIView):
    pass


class ThreadPruneView(APIView):
    pass


class ThreadDetailView(APIView):
    pass


class ThreadCopyView(APIView):
    pass


class ThreadStateView(APIView):
    pass


class ThreadStateAtCheckpointView(APIView):
    pass


class ThreadStateAtIdView(APIView):
    pass


class ThreadHistoryView(APIView):
    pass
