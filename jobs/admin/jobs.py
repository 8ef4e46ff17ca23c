"""The job admin: the changelist, the change form, the actions and the dashboard page.

Every status change, from the change form or an action, goes through
``jobs.lifecycle``: actions are set-based guarded UPDATEs that report how many
jobs changed and how many were skipped, and why; a refused status edit is a
form error. The changelist is built to stay fast with millions of rows (see
``jobs.admin.changelist``).
"""

import json
import logging
import re
import uuid
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.db.models import CharField, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from jobs import lifecycle
from jobs.admin import dashboard, failures, queue_page
from jobs.admin.actions import JobActions
from jobs.admin.changelist import (
    DelayedFilter,
    ErrorClassFilter,
    EstimatedCountPaginator,
    HasErrorFilter,
    IndexedChangeList,
    QueueFilter,
    TaskFilter,
)
from jobs.admin.dashboard import stamp
from jobs.admin.forms import EDITABLE_FIELDS, JobAttemptInline, JobForm
from jobs.exceptions import JobChanged, TransitionRefused
from jobs.models import Job, Status, Worker
from jobs.routers import reads_from_replica

logger = logging.getLogger(__name__)

# A text search reads the payload and error of at most this many jobs: the newest of
# the filtered list. Unbounded, a search that matches nothing reads the whole table.
# 5,000: a search that matches nothing within status = failed reads 5,000 failed jobs
# scattered among 125,000 (their creation times' range), 45 ms at ten million jobs.
SEARCH_ROWS = 5_000
# It lists at most this many matches, the newest: found in the one read of the window
# (the page and its count then look them up by id, instead of reading the window again).
SEARCH_MATCHES = 1_000
# A whole job id, or its first 8 or more hex digits (the list shows the first 8).
ID_PREFIX = re.compile(r"[0-9a-fA-F]{8}(-?[0-9a-fA-F]){0,24}")


def _dashed_length(digits: int) -> int:
    """How many characters of a UUID's dashed text hold its first ``digits`` hex digits."""
    return digits + sum(digits > at for at in (8, 12, 16, 20))


# The list's error column shows this many characters of the error's first line.
ERROR_COLUMN = 48

# The admin index gains a link to the dashboard (the template extends Django's own).
admin.site.index_template = "admin/jobs_index.html"


def badge(status: str) -> str:
    return format_html('<span class="job-badge status-{}">{}</span>', status, status)


def job_links(rows: Any) -> str:
    """Links to jobs, one a line: ``(id, name, status, note)`` each; a deleted one unlinked."""
    lines = []
    for pk, name, status, note in rows:
        if status == "deleted":
            lines.append(format_html("{} (deleted) {}", name, note))
            continue
        url = reverse("admin:jobs_job_change", args=[pk])
        lines.append(format_html('<a href="{}">{}</a> {} {}', url, name, badge(status), note))
    return format_html_join("", "<div>{}</div>", ((line,) for line in lines)) or "-"


def pre(text: str | None) -> str:
    return format_html('<pre class="job-pre">{}</pre>', text) if text else "-"


def short(delta: timedelta | None) -> str:
    return dashboard.human(delta) or "-"


class JobAdmin(JobActions, admin.ModelAdmin):
    form = JobForm
    list_display = [
        "short_id",
        "status_badge",
        "task",
        "queue",
        "priority",
        "attempts_of",
        "error_summary",
        "worker",
        "age",
        "run_after_at",
        "duration",
    ]
    list_display_links = ["short_id"]
    # Only the columns an index sorts (see IndexedChangeList): id, creation time, and
    # status, task and queue each followed by creation time.
    sortable_by = ["short_id", "status_badge", "task", "queue", "age"]
    list_filter = [
        "status",
        QueueFilter,
        TaskFilter,
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
        HasErrorFilter,
        DelayedFilter,
        ErrorClassFilter,
    ]
    search_fields = ["id"]  # see get_search_results
    search_help_text = (
        f"A job id or its first 8+ characters, or text in the payload or error of the newest "
        f"{SEARCH_ROWS:,} jobs in the list (filter by date, status, queue or task to reach "
        "older ones)."
    )
    date_hierarchy = "created_at"
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    inlines = [JobAttemptInline]
    actions = ["retry_jobs", "cancel_jobs", "run_next", "delete_selected"]
    readonly_fields = [
        "id",
        "attempts",
        "result_json",
        "error_text",
        "traceback_text",
        "progress_bar",
        "worker_link",
        "lease",
        "created",
        "updated",
        "started",
        "finished",
        "idempotency_key",
        "concurrency_key",
        "waiting_for",
        "workflow_link",
        "parents",
        "dependents",
    ]
    fieldsets = [
        (None, {"fields": ["id", "status", "task", "queue", "priority", "run_after"]}),
        ("Payload and result", {"fields": ["payload", "result_json"]}),
        ("Error", {"fields": ["error_text", "traceback_text"]}),
        (
            "Execution",
            {
                "fields": [
                    ("attempts", "max_attempts", "timeout"),
                    "progress_bar",
                    ("worker_link", "lease"),
                    ("created", "started", "finished", "updated"),
                    "idempotency_key",
                    ("concurrency_key", "waiting_for"),
                ]
            },
        ),
        ("Workflow", {"fields": ["workflow_link", "parents", "dependents"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        """The workflow's fieldset only for a job of a workflow."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.workflow_id is None:
            fieldsets = [f for f in fieldsets if f[0] != "Workflow"]
        return fieldsets

    class Media:
        css = {"all": ["jobs/admin.css"]}

    # -- columns --------------------------------------------------------------------------

    @admin.display(description="waiting for")
    def waiting_for(self, job: Job) -> str:
        """Why a queued job is not running yet (a paused queue, a limit), or the parents a
        waiting job still waits for, if anything."""
        if job.pk and job.status == Status.WAITING:
            return f"its parents: {', '.join(lifecycle.waiting_on(job))}"
        return (lifecycle.waiting_for(job) if job.pk else "") or "-"

    @admin.display(description="workflow")
    def workflow_link(self, job: Job) -> str:
        if job.workflow_id is None:
            return "-"
        url = reverse("admin:jobs_workflow_change", args=[job.workflow_id])
        return format_html('<a href="{}">{}</a> (as {})', url, job.workflow, job.step)

    @admin.display(description="waits for")
    def parents(self, job: Job) -> str:
        edges = job.parent_links.order_by("id").values_list(
            "parent_id", "parent_name", "parent__status", "parent_final", "on_parent_failure"
        )
        return job_links(
            (pk, name, status or final or "deleted", f"on failure: {policy}")
            for pk, name, status, final, policy in edges
        )

    @admin.display(description="dependents")
    def dependents(self, job: Job) -> str:
        edges = job.child_links.order_by("id").values_list(
            "child_id", "child__step", "child__status", "on_parent_failure"
        )
        return job_links(
            (pk, name, status, f"on failure: {policy}") for pk, name, status, policy in edges
        )

    def action_checkbox(self, job: Job) -> str:
        """The row's selection box, as Django's own but formatted directly: the stock one
        renders a form widget through the template engine, a quarter of a 50-row page's
        time."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            job.pk,
            format_html(_("Select this object for an action - {}"), str(job)),
        )

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return format_html('<span title="{}">{}</span>', job.pk, str(job.pk)[:8])

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        return badge(job.status)

    @admin.display(description="tries")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="age", ordering="created_at")
    def age(self, job: Job) -> str:
        return short(timezone.now() - job.created_at)

    @admin.display(description="error", ordering="error_class")
    def error_summary(self, job: Job) -> str:
        """The cause and the error's first line, shortened; the whole line on hover."""
        if not job.error:
            return ""
        first = job.error.strip().partition("\n")[0]
        text = first if len(first) <= ERROR_COLUMN else first[: ERROR_COLUMN - 1] + "…"
        return format_html('<span class="job-error" title="{}">{}</span>', first, text)

    @admin.display(description="run after", ordering="run_after")
    def run_after_at(self, job: Job) -> str:
        """When a queued job becomes due: "in 5 min" while delayed, else blank."""
        if job.run_after is None:
            return ""
        left = job.run_after - timezone.now()
        if job.status == Status.QUEUED and left.total_seconds() > 0:
            return format_html('<span title="{}">in {}</span>', stamp(job.run_after), short(left))
        return format_html('<span title="{}">{}</span>', stamp(job.run_after), "due")

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        """How long the attempt ran (runs, while processing, with its progress)."""
        if job.started_at is None:
            return "-"
        running = job.status == Status.PROCESSING
        end = job.finished_at or (timezone.now() if running else None)
        if end is None:
            return "-"
        if running and job.progress is not None:
            return f"{short(end - job.started_at)} · {job.progress}%"
        return short(end - job.started_at)

    @admin.display(description="worker", ordering="worker_id")
    def worker(self, job: Job) -> str:
        if not job.worker_id:
            return "-"
        return format_html(
            '<span class="job-worker" title="{}">{}</span>', job.worker_id, job.worker_id
        )

    # -- the change page ------------------------------------------------------------------

    @admin.display(description="result")
    def result_json(self, job: Job) -> str:
        if job.result is None:
            return "-"
        return pre(json.dumps(job.result, indent=2, ensure_ascii=False))

    @admin.display(description="error")
    def error_text(self, job: Job) -> str:
        return pre(job.error)

    @admin.display(description="traceback")
    def traceback_text(self, job: Job) -> str:
        """The whole traceback, never scrolled: its last line is the exception itself."""
        if not job.traceback:
            return "-"
        return format_html('<pre class="job-pre job-pre-full">{}</pre>', job.traceback)

    @admin.display(description="created")
    def created(self, job: Job) -> str:
        return stamp(job.created_at)

    @admin.display(description="started")
    def started(self, job: Job) -> str:
        return stamp(job.started_at)

    @admin.display(description="finished")
    def finished(self, job: Job) -> str:
        return stamp(job.finished_at)

    @admin.display(description="updated")
    def updated(self, job: Job) -> str:
        return stamp(job.updated_at)

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> str:
        """Progress while running, or as a finished job last reported it; a failed or
        cancelled job shows none (its last report says nothing about the outcome)."""
        if job.progress is None or job.status not in (Status.PROCESSING, Status.DONE):
            return "-"
        return format_html(
            '<progress max="100" value="{}"></progress> {}% {}',
            job.progress,
            job.progress,
            job.progress_message,
        )

    @admin.display(description="worker", ordering="worker_id")
    def worker_link(self, job: Job) -> str:
        if not job.worker_id:
            return "-"
        if Worker.objects.filter(pk=job.worker_id).exists():
            url = reverse("admin:jobs_worker_change", args=[job.worker_id])
            return format_html('<a href="{}">{}</a>', url, job.worker_id)
        return job.worker_id

    @admin.display(description="lease")
    def lease(self, job: Job) -> str:
        if job.lease_expires_at is None:
            return "-"
        left = (job.lease_expires_at - timezone.now()).total_seconds()
        when = f"in {left:.0f} s" if left >= 0 else f"{-left:.0f} s ago (expired)"
        return f"{stamp(job.lease_expires_at)}, {when}"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*self.readonly_fields, "task"] if obj else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A running job cannot be deleted: cancel it first."""
        if obj is not None and obj.status == Status.PROCESSING:
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """List what a bulk delete removes; running jobs are left out (they are skipped)."""
        objs = [obj for obj in objs if obj.status != Status.PROCESSING]
        return super().get_deleted_objects(objs, request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Find a job by id or id prefix (a primary key range), else by payload or error text."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if ID_PREFIX.fullmatch(term):
            digits = term.replace("-", "").lower()
            if len(digits) == 32:
                return queryset.filter(pk=uuid.UUID(digits)), False
            if connections[queryset.db].vendor == "mysql":
                # MariaDB's UUID type does not sort as its text does (it orders time-based
                # UUIDs by time): match the text's prefix (a scan of the ids) instead.
                prefix = str(uuid.UUID(digits.ljust(32, "0")))[: _dashed_length(len(digits))]
                ids = queryset.annotate(id_text=Cast("id", CharField(max_length=36)))
                return ids.filter(id_text__startswith=prefix), False
            low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
            return queryset.filter(pk__gte=low, pk__lte=high), False
        # The newest SEARCH_ROWS jobs of the list: an index range on creation time.
        older = queryset.order_by("-created_at").values_list("created_at", flat=True)
        cutoff = next(iter(older[SEARCH_ROWS - 1 : SEARCH_ROWS]), None)
        if cutoff is not None:
            queryset = queryset.filter(created_at__gte=cutoff)
            messages.info(
                request,
                f"Text searched in the newest {SEARCH_ROWS:,} jobs of this list (created since "
                f"{stamp(cutoff)}): filter by date, status, queue or task to reach older ones.",
            )
        text = queryset.annotate(payload_text=Cast("payload", TextField()))
        match = Q(payload_text__icontains=term) | Q(error__icontains=term)
        if not term.isascii():
            # SQLite and MariaDB keep the payload as JSON text, written with non-ASCII
            # characters escaped ("caf\\u00e9"): look for that spelling too.
            match |= Q(payload_text__icontains=json.dumps(term)[1:-1])
        found = text.filter(match)
        ids = list(
            found.order_by("-created_at", "-pk").values_list("pk", flat=True)[: SEARCH_MATCHES + 1]
        )
        if len(ids) > SEARCH_MATCHES:
            messages.info(
                request,
                f"Listing the newest {SEARCH_MATCHES:,} matches: narrow the search or the "
                "filters to see the others.",
            )
        return queryset.filter(pk__in=ids[:SEARCH_MATCHES]), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type:
        return IndexedChangeList

    def save_model(self, request: HttpRequest, obj: Job, form: JobForm, change: bool) -> None:
        """Create the job through ``lifecycle.enqueue`` (blanks take the task's defaults), or
        apply the fields the operator changed and the status edit through ``lifecycle.edit``,
        a compare-and-set on the status their page showed (a refusal: changeform_view)."""
        data = form.cleaned_data
        if not change:
            job, _ = lifecycle.enqueue(
                task=data["task"], **{f: data.get(f) for f in EDITABLE_FIELDS}
            )
            # The admin goes on with ``obj`` (its message, its links, its log entry): make
            # it the job created, not the form's unsaved instance with its own id.
            for field in Job._meta.concrete_fields:
                setattr(obj, field.attname, getattr(job, field.attname))
            obj._state.adding, obj._state.db = False, job._state.db
            return
        lifecycle.edit(
            job_id=obj.pk,
            seen=form.opened_with("status"),
            status=data["status"] if "status" in form.changed_data else None,
            changes={f: data[f] for f in form.changed_data if f in EDITABLE_FIELDS},
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Answer a refused edit with the job's page as it is now, and say why.

        ``save_model`` raises inside the view's transaction, so nothing of the save
        (nor its "changed" log entry) is kept.
        """
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except JobChanged as changed:
            now = f"it is now {changed.current}" if changed.current else "it no longer exists"
            message = (
                f"This job changed since you opened it: {now}. Nothing was changed; "
                "the page shows it as it is now."
            )
        except TransitionRefused as refused:
            message = f"Nothing was changed: {refused}."
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    # -- the dashboard --------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.dashboard_view)
        failed = self.admin_site.admin_view(self.failures_view)
        queues = self.admin_site.admin_view(self.queues_view)
        return [
            path("dashboard/", view, name="jobs_dashboard"),
            path("failures/", failed, name="jobs_failures"),
            path("queues/", queues, name="jobs_queues"),
            *super().get_urls(),
        ]

    def failures_view(self, request: HttpRequest) -> TemplateResponse:
        """The failure queue grouped by cause and task (``jobs.admin.failures``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Failures by cause",
            "opts": self.opts,
            "groups": failures.groups(),
            "max_groups": failures.MAX_GROUPS,
            "exact_failed": f"{failures.EXACT_FAILED:,}",
            "can_change": self.has_change_permission(request),
            "can_delete": self.has_delete_permission(request),
        }
        return TemplateResponse(request, "admin/jobs/failures.html", context)

    def queues_view(self, request: HttpRequest) -> HttpResponse:
        """Every queue's numbers and its pause control (``jobs.admin.queue_page``)."""
        return queue_page.view(request, self)

    @method_decorator(reads_from_replica)
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list; its GETs may read from a replica (``JOBS_READ_REPLICA``)."""
        return super().changelist_view(request, extra_context)

    @method_decorator(reads_from_replica)
    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **dashboard.context(),
            "title": "Queue dashboard",
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/jobs/dashboard.html", context)


admin.site.register(Job, JobAdmin)
