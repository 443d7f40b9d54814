"""Operator console for assistants and runs: find a run, see its attempts, cancel it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agentserver.errors import APIError
from runs import services
from runs.models import Assistant, AssistantVersion, Run


class AssistantVersionInline(admin.TabularInline):
    model = AssistantVersion
    extra = 0
    fields = ("version", "name", "graph_id", "created_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-version",)


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ("name", "graph_id", "version", "assistant_id", "updated_at")
    list_filter = ("graph_id",)
    search_fields = ("name", "graph_id")
    readonly_fields = ("assistant_id", "version", "created_at", "updated_at")
    inlines = (AssistantVersionInline,)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("run_id", "thread_id", "status", "attempt", "created_at", "started_at", "ended_at")
    list_filter = ("status", "multitask_strategy")
    search_fields = ("=run_id", "=thread__thread_id")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = (
        "run_id", "thread", "assistant_id", "status", "attempt", "created_at", "started_at", "ended_at",
        "lease_token", "lease_expires_at", "cancel_action", "metadata", "kwargs", "output", "error",
    )
    fields = readonly_fields
    actions = ("cancel_runs",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are admitted through the API, which applies the thread's strategy

    @admin.action(description="Cancel selected runs (keep their checkpoints)")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        try:
            cancelled = services.cancel_runs(queryset, "interrupt")
        except APIError:
            self.message_user(request, "None of the selected runs is pending or running.", messages.WARNING)
            return
        self.message_user(request, f"Cancelled {len(cancelled)} run(s).", messages.SUCCESS)
