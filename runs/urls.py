"""Routes of the runs app: assistants, runs on threads, stateless runs, thread streams and the
v2 protocol (HTTP here, the websocket in ``websocket_urlpatterns``)."""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from runs.consumers import ThreadEventsConsumer
from runs.views import assistants, runs, threads

urlpatterns = [
    # Assistants (api-reference §1.2)
    path("assistants", assistants.AssistantCreateView.as_view()),
    path("assistants/search", assistants.AssistantSearchView.as_view()),
    path("assistants/count", assistants.AssistantCountView.as_view()),
    path("assistants/<str:assistant_id>", assistants.AssistantDetailView.as_view()),
    path("assistants/<str:assistant_id>/graph", assistants.AssistantGraphView.as_view()),
    path("assistants/<str:assistant_id>/schemas", assistants.AssistantSchemasView.as_view()),
    path("assistants/<str:assistant_id>/subgraphs", assistants.AssistantSubgraphsView.as_view()),
    path(
        "assistants/<str:assistant_id>/subgraphs/<path:namespace>",
        assistants.AssistantNamespaceSubgraphsView.as_view(),
    ),
    path("assistants/<str:assistant_id>/versions", assistants.AssistantVersionsView.as_view()),
    path("assistants/<str:assistant_id>/latest", assistants.AssistantLatestView.as_view()),
    # Runs on a thread (§1.5)
    path("threads/<str:thread_id>/runs", runs.ThreadRunsView.as_view()),
    path("threads/<str:thread_id>/runs/stream", runs.StreamRunView.as_view()),
    path("threads/<str:thread_id>/runs/wait", runs.WaitRunView.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>", runs.RunDetailView.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/join", runs.JoinRunView.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/stream", runs.JoinStreamView.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/cancel", runs.CancelRunView.as_view()),
    # Stateless runs and bulk operations (§1.6)
    path("runs", runs.StatelessRunsView.as_view()),
    path("runs/stream", runs.StatelessStreamRunView.as_view()),
    path("runs/wait", runs.StatelessWaitRunView.as_view()),
    path("runs/batch", runs.BatchRunsView.as_view()),
    path("runs/cancel", runs.BulkCancelView.as_view()),
    path("runs/<str:run_id>/stream", runs.JoinStreamView.as_view()),
    # Thread stream (§2.7) and the v2 event-streaming protocol (§2.10)
    path("threads/<str:thread_id>/stream", threads.ThreadStreamView.as_view()),
    path("threads/<str:thread_id>/commands", threads.ThreadCommandsView.as_view()),
    path("threads/<str:thread_id>/stream/events", threads.ThreadEventsView.as_view()),
]

# Websocket routes, served by agentserver.asgi behind origin validation.
websocket_urlpatterns = [
    path("threads/<str:thread_id>/stream/events", ThreadEventsConsumer.as_asgi()),
    re_path(r"", WebsocketDenier.as_asgi()),
]
