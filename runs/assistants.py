"""Assistants: saved, versioned run configurations of a graph."""

from __future__ import annotations

from django.db import transaction

from agentserver.graphs import default_assistant_id, get_registry
from runs.models import Assistant, AssistantVersion


def ensure_system_assistants() -> None:
    """Create the default assistant of every configured graph (id = UUIDv5 of the graph id)."""
    registry = get_registry()
    for graph_id in registry.ids():
        with transaction.atomic():
            assistant, created = Assistant.objects.get_or_create(
                assistant_id=default_assistant_id(graph_id),
                defaults={
                    "graph_id": graph_id,
                    "name": graph_id,
                    "description": registry.get(graph_id).description,
                    "metadata": {"created_by": "system"},
                },
            )
            if created:
                AssistantVersion.objects.create(
                    assistant=assistant,
                    version=1,
                    graph_id=graph_id,
                    name=assistant.name,
                    description=assistant.description,
                    metadata=assistant.metadata,
                )
