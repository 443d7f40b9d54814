"""Operator console for threads: find a thread by id or metadata, see its state columns, reset it."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from threads.models import Thread, ThreadStatus
from threads.services import thread_total


class ThreadPaginator(Paginator):
    """The thread list's count: with no filter or search, the tally (``ThreadTally``) instead
    of counting every thread, whose cost grows with the table."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet) and not self.object_list.query.where:
            return thread_total()
        return super().count


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ("thread_id", "status", "graph_id", "created_at", "updated_at", "expires_at")
    list_filter = ("status", "ttl_strategy")
    search_fields = ("thread_id",)
    ordering = ("-updated_at",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "thread_id",
        "created_at",
        "updated_at",
        "state_updated_at",
        "values",
        "interrupts",
        "error",
    )
    fieldsets = (
        (None, {"fields": ("thread_id", "status", "metadata", "config")}),
        (
            "State (denormalised from the latest checkpoint)",
            {"fields": ("values", "interrupts", "error", "state_updated_at")},
        ),
        ("TTL", {"fields": ("ttl_minutes", "ttl_strategy", "expires_at")}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )
    actions = ("mark_idle",)
    show_full_result_count = False
    paginator = ThreadPaginator

    @admin.display(description="graph")
    def graph_id(self, thread: Thread) -> str:
        return (thread.metadata or {}).get("graph_id", "")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # Thread ids are UUIDs: match a whole id exactly (an index hit) instead of a text scan.
        term = search_term.strip()
        try:
            return queryset.filter(thread_id=uuid.UUID(term)), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.action(description="Mark selected threads idle (frees a thread stuck as busy or error)")
    def mark_idle(self, request: HttpRequest, queryset: QuerySet) -> None:
        updated = queryset.exclude(status=ThreadStatus.IDLE).update(status=ThreadStatus.IDLE, error=None)
        self.message_user(request, f"{updated} thread(s) marked idle.", messages.SUCCESS)
