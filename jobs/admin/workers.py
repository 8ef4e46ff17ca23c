"""The worker registry in the admin: read-only, with each worker's live or dead state."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from jobs.admin.dashboard import human, stamp
from jobs.models import Worker


class AliveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "live"), ("dead", "dead")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "live":
            return queryset.alive()
        if self.value() == "dead":
            return queryset.dead()
        return queryset


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Workers register themselves; operators only look."""

    # The heartbeat beside the state: it says why a worker is dead, and stays in view
    # on a 1280-pixel screen.
    # The id already names the host and pid (host-pid-suffix): the list leaves those
    # two out, so that every column fits at 1280 px; the worker's page shows them.
    list_display = ["id", "state", "heartbeat", "queue_list", "concurrency", "started", "current"]
    list_filter = [AliveFilter]
    search_fields = ["id", "hostname"]
    fields = [
        "id",
        "state",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "started",
        "last_beat",
        "heartbeat",
        "current",
    ]
    readonly_fields = fields

    class Media:
        css = {"all": ["jobs/admin.css"]}

    @admin.display(description="state")
    def state(self, worker: Worker) -> str:
        live = worker.is_alive
        return format_html(
            '<span class="job-badge worker-{}">{}</span>',
            "live" if live else "dead",
            "live" if live else "dead",
        )

    @admin.display(description="queues")
    def queue_list(self, worker: Worker) -> str:
        return ", ".join(worker.queues) if worker.queues else "all"

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> str:
        """Seconds ago (minutes, hours or days when longer): dead is a lease of silence,
        so "0 minutes" would say nothing."""
        ago = human(timezone.now() - worker.last_heartbeat_at)
        return format_html('<span title="{}">{} ago</span>', stamp(worker.last_heartbeat_at), ago)

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> str:
        return stamp(worker.started_at)

    @admin.display(description="last heartbeat at")
    def last_beat(self, worker: Worker) -> str:
        return stamp(worker.last_heartbeat_at)

    @admin.display(description="current jobs")
    def current(self, worker: Worker) -> str:
        jobs = worker.current_jobs().values_list("pk", "task")[:10]
        links = (
            (reverse("admin:jobs_job_change", args=[pk]), task, str(pk)[:8]) for pk, task in jobs
        )
        return format_html_join(", ", '<a href="{}">{} {}</a>', links) or "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
