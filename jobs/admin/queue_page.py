"""The queues page: every queue's backlog, throughput and failures, and its pause control.

A queue is listed when it has jobs, a ``Queue`` row or an entry in ``JOBS_QUEUES``.
Its numbers come from the same cheap reads as the dashboard's (``jobs.observability.stats``:
the partial indexes on active jobs, one probe of the due index per queue for its wait,
the last hour of the ``finished_at`` index), plus one range of the due index for the
delayed jobs. The names of the queues that have jobs come from a loose scan of the
``(queue, created_at)`` index: one probe per queue, however many jobs each holds.

Pausing and resuming go through ``lifecycle.pause_queue`` and ``resume_queue``, need the
*change queue* permission, and are recorded in the queue's history.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, router
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone

from jobs import lifecycle
from jobs.admin.dashboard import delayed_by_queue, human
from jobs.models import Job, Queue, Status
from jobs.observability import stats

TABLE = Job._meta.db_table
# Each step finds the next queue name after the last one found: an index probe each.
QUEUE_NAMES = f"""
WITH RECURSIVE found(queue) AS (
    SELECT MIN(queue) FROM {TABLE}
    UNION ALL
    SELECT (SELECT MIN(queue) FROM {TABLE} WHERE queue > found.queue)
    FROM found WHERE found.queue IS NOT NULL
)
SELECT queue FROM found WHERE queue IS NOT NULL
"""  # noqa: S608 (the table's name, a constant)
HOUR = 3600
VERBS = {"pause": (lifecycle.pause_queue, "paused"), "resume": (lifecycle.resume_queue, "resumed")}


@dataclass
class Row:
    name: str
    limits: lifecycle.Limits
    due: int = 0
    delayed: int = 0
    processing: int = 0
    done: int = 0  # in the last hour
    failed: int = 0  # in the last hour
    wait_seconds: float | None = None  # the oldest due job's
    estimated: bool = False  # the queued counts are the planner's estimate

    @property
    def per_minute(self) -> float:
        return (self.done + self.failed) / (HOUR / 60)

    @property
    def per_minute_text(self) -> str:
        """The throughput as read: "<0.1" rather than a misleading "0.0" for a trickle."""
        rate = self.per_minute
        return "<0.1" if 0 < rate < 0.05 else f"{rate:.1f}"

    @property
    def failure_rate(self) -> float | None:
        finished = self.done + self.failed
        return self.failed / finished if finished else None

    @property
    def wait(self) -> str | None:
        return human(timedelta(seconds=self.wait_seconds)) if self.wait_seconds else None

    @property
    def limit_text(self) -> list[str]:
        found = self.limits
        pairs = [
            ("concurrency", found.concurrency),
            ("per key", found.key_concurrency),
            ("rate", found.rate),
            ("rate per key", found.key_rate),
        ]
        return [f"{label} {value}" for label, value in pairs if value]


def queue_names() -> list[str]:
    """The names of the queues that have jobs (any status)."""
    using = router.db_for_read(Job)
    with connections[using].cursor() as cursor:
        cursor.execute(QUEUE_NAMES)
        return [name for (name,) in cursor.fetchall()]


def rows(now: datetime | None = None) -> list[Row]:
    """Every queue with jobs, a stored row or settings, by name."""
    now = now or timezone.now()
    queues, _ = stats.by_queue(now, cap=stats.QUEUED_EXACT_LIMIT)
    delayed = delayed_by_queue(now)
    configured = lifecycle.all_limits()
    names = sorted(set(queue_names()) | set(configured) | set(queues))
    found = []
    for name in names:
        entry = queues.get(name)
        row = Row(name=name, limits=configured.get(name) or lifecycle.Limits(queue=name))
        if entry is not None:
            hour = entry["finished"]["last_60m"]
            row.delayed = delayed.get(name, 0)
            row.due = max(entry[Status.QUEUED] - row.delayed, 0)
            row.processing = entry[Status.PROCESSING]
            row.done, row.failed = hour[Status.DONE], hour[Status.FAILED]
            row.wait_seconds = entry["lag_seconds"]
            row.estimated = Status.QUEUED.value in entry.get("estimated", ())
        found.append(row)
    return found


def can_control(request: HttpRequest, model_admin: Any) -> bool:
    """Whether the user may pause and resume queues (the *change queue* permission)."""
    return model_admin.admin_site.get_model_admin(Queue).has_change_permission(request)


def view(request: HttpRequest, model_admin: Any) -> HttpResponse:
    """Show the queues; on POST, pause or resume one (``queue``, ``action``)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if request.method == "POST":
        return control(request, model_admin)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Queue overview",
        "opts": model_admin.opts,
        "rows": rows(),
        "exact_limit": f"{stats.QUEUED_EXACT_LIMIT:,}",
        "can_control": can_control(request, model_admin),
    }
    return TemplateResponse(request, "admin/jobs/queues.html", context)


def control(request: HttpRequest, model_admin: Any) -> HttpResponse:
    """Pause or resume the queue named in the form, through the lifecycle."""
    if not can_control(request, model_admin):
        raise PermissionDenied
    name, action = request.POST.get("queue", ""), request.POST.get("action", "")
    try:
        Queue._meta.get_field("name").clean(name, None)
        verb, done = VERBS[action]
    except (ValidationError, KeyError):
        model_admin.message_user(
            request, "Nothing was changed: no such queue or action.", messages.ERROR
        )
        return HttpResponseRedirect(request.get_full_path())
    queue = verb(name=name)
    queue_admin = model_admin.admin_site.get_model_admin(Queue)
    queue_admin.log_change(request, queue, [{"changed": {"fields": ["paused"]}}])
    model_admin.message_user(request, f"Queue {name} {done}.", messages.SUCCESS)
    return HttpResponseRedirect(request.get_full_path())
