"""Queues in the admin: pause and resume (actions), and limits that override JOBS_QUEUES.

Pausing and resuming go through ``jobs.lifecycle`` (resuming wakes idle workers)
and are recorded in each queue's history, like the limits edited in its form.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs import lifecycle
from jobs.conf import conf
from jobs.models import Queue


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    """One row per queue with stored flow control; empty limits fall back to JOBS_QUEUES."""

    list_display = [
        "name",
        "state",
        "concurrency_in_force",
        "key_concurrency_in_force",
        "rate_in_force",
        "key_rate_in_force",
        "processing",
        "queued",
        "updated_at",
    ]
    search_fields = ["name"]
    actions = ["pause", "resume"]
    fields = [
        "name",
        "state",
        "concurrency",
        "key_concurrency",
        "rate",
        "key_rate",
        "settings",
        "processing",
        "queued",
        "updated_at",
    ]
    readonly_fields = ["state", "settings", "processing", "queued", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*self.readonly_fields, "name"] if obj else self.readonly_fields

    @admin.display(description="state")
    def state(self, queue: Queue) -> str:
        return "paused" if queue.paused else "active"

    @admin.display(description="concurrency")
    def concurrency_in_force(self, queue: Queue) -> Any:
        return lifecycle.limits(queue.name, queue).concurrency or "-"

    @admin.display(description="per key")
    def key_concurrency_in_force(self, queue: Queue) -> Any:
        return lifecycle.limits(queue.name, queue).key_concurrency or "-"

    @admin.display(description="rate")
    def rate_in_force(self, queue: Queue) -> str:
        return lifecycle.limits(queue.name, queue).rate or "-"

    @admin.display(description="rate per key")
    def key_rate_in_force(self, queue: Queue) -> str:
        return lifecycle.limits(queue.name, queue).key_rate or "-"

    @admin.display(description="JOBS_QUEUES")
    def settings(self, queue: Queue) -> str:
        configured = conf.QUEUES.get(queue.name, {})
        return ", ".join(f"{k}={v}" for k, v in sorted(configured.items())) or "-"

    @admin.display(description="processing")
    def processing(self, queue: Queue) -> int:
        return self._usage(queue)["processing"]

    @admin.display(description="queued")
    def queued(self, queue: Queue) -> int:
        return self._usage(queue)["queued"]

    @staticmethod
    def _usage(queue: Queue) -> dict[str, int]:
        """The queue's usage, read once per row (each column shows one of its counts)."""
        if not hasattr(queue, "_usage"):
            empty = {"processing": 0, "queued": 0, "due": 0}
            queue._usage = lifecycle.usage(queue.name) if queue.name else empty  # type: ignore[attr-defined]
        return queue._usage  # type: ignore[attr-defined]

    @admin.action(description="Pause selected queues", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, lifecycle.pause_queue, "paused")

    @admin.action(description="Resume selected queues", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, lifecycle.resume_queue, "resumed")

    def _set(self, request: HttpRequest, queryset: QuerySet, verb: Any, done: str) -> None:
        names = list(queryset.values_list("name", flat=True))
        for name in names:
            queue = verb(name=name)
            self.log_change(request, queue, [{"changed": {"fields": ["paused"]}}])
        self.message_user(request, f"{len(names)} queue(s) {done}.", messages.SUCCESS)
