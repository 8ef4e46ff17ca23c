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
from django.contrib.admin import ActionLocation
from django.contrib.admin.actions import delete_selected as confirm_delete
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from jobs import lifecycle
from jobs.admin import dashboard
from jobs.admin.changelist import EstimatedCountPaginator, HasErrorFilter, QueueFilter, TaskFilter
from jobs.admin.forms import EDITABLE_FIELDS, JobAttemptInline, JobForm
from jobs.conf import conf
from jobs.exceptions import JobChanged, TransitionRefused
from jobs.models import Job, Status, Worker

logger = logging.getLogger(__name__)

# A whole job id, or its first 8 or more hex digits (the list shows the first 8).
ID_PREFIX = re.compile(r"[0-9a-fA-F]{8}(-?[0-9a-fA-F]){0,24}")
EVERYWHERE = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]

# The admin index gains a link to the dashboard (the template extends Django's own).
admin.site.index_template = "admin/jobs_index.html"


def badge(status: str) -> str:
    return format_html('<span class="job-badge status-{}">{}</span>', status, status)


def pre(text: str | None) -> str:
    return format_html('<pre class="job-pre">{}</pre>', text) if text else "-"


def short(delta: timedelta | None) -> str:
    return dashboard.human(delta) or "-"


class JobAdmin(admin.ModelAdmin):
    form = JobForm
    list_display = [
        "short_id",
        "status_badge",
        "task",
        "queue",
        "priority",
        "attempts_of",
        "worker",
        "age",
        "duration",
        "progress_percent",
    ]
    list_display_links = ["short_id"]
    list_filter = [
        "status",
        QueueFilter,
        TaskFilter,
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
        HasErrorFilter,
    ]
    search_fields = ["id"]  # see get_search_results
    search_help_text = "A job id or its first 8+ characters, or text in the payload or error."
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
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "idempotency_key",
        "concurrency_key",
        "waiting_for",
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
                    ("created_at", "started_at", "finished_at", "updated_at"),
                    "idempotency_key",
                    ("concurrency_key", "waiting_for"),
                ]
            },
        ),
    ]

    class Media:
        css = {"all": ["jobs/admin.css"]}

    # -- columns --------------------------------------------------------------------------

    @admin.display(description="waiting for")
    def waiting_for(self, job: Job) -> str:
        """Why a queued job is not running yet (a paused queue, a limit), if anything."""
        return (lifecycle.waiting_for(job) if job.pk else "") or "-"

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return format_html('<span title="{}">{}</span>', job.pk, str(job.pk)[:8])

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> str:
        return badge(job.status)

    @admin.display(description="attempts")
    def attempts_of(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="age", ordering="created_at")
    def age(self, job: Job) -> str:
        return short(timezone.now() - job.created_at)

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        if job.started_at is None:
            return "-"
        end = job.finished_at or (timezone.now() if job.status == Status.PROCESSING else None)
        return short(end - job.started_at) if end else "-"

    @admin.display(description="worker", ordering="worker_id")
    def worker(self, job: Job) -> str:
        return job.worker_id or "-"

    @admin.display(description="progress")
    def progress_percent(self, job: Job) -> str:
        return f"{job.progress}%" if job.progress is not None else ""

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
        return pre(job.traceback)

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> str:
        if job.progress is None:
            return "-"
        return format_html(
            '<progress max="100" value="{}"></progress> {}% {}',
            job.progress,
            job.progress,
            job.progress_message,
        )

    @admin.display(description="worker")
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
        return f"{job.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC, {when}"

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
            low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
            return queryset.filter(pk__gte=low, pk__lte=high), False
        text = queryset.annotate(payload_text=Cast("payload", TextField()))
        return text.filter(Q(payload_text__icontains=term) | Q(error__icontains=term)), False

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

    # -- actions --------------------------------------------------------------------------

    def report(self, request: HttpRequest, result: lifecycle.BulkResult, done: str, why: str):
        """Tell the operator how many jobs changed, and how many were skipped and why."""
        message = f"{result.changed} job{'s' if result.changed != 1 else ''} {done}."
        if result.skipped:
            total = sum(result.skipped.values())
            found = ", ".join(f"{n} {status}" for status, n in sorted(result.skipped.items()))
            message += f" {total} skipped: {found} ({why})."
        level = messages.WARNING if result.skipped else messages.SUCCESS
        self.message_user(request, message, level)
        logger.info(
            "admin user=%s action=%s changed=%s skipped=%s",
            request.user.get_username(),
            done,
            result.changed,
            result.skipped,
        )

    def too_many(self, request: HttpRequest, queryset: QuerySet) -> bool:
        """Refuse (and say so) an action on more than JOBS_MAX_BULK jobs."""
        if (count := queryset.count()) <= conf.MAX_BULK:
            return False
        self.message_user(
            request,
            f"{count} jobs selected; one action handles at most {conf.MAX_BULK} "
            "(JOBS_MAX_BULK). Nothing changed.",
            messages.ERROR,
        )
        return True

    @admin.action(description="Retry / requeue", permissions=["change"], location=EVERYWHERE)
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self.too_many(request, queryset):
            return
        result = lifecycle.retry_many(ids=queryset)
        self.report(request, result, "requeued", "only failed, cancelled or done jobs are retried")

    @admin.action(description="Cancel", permissions=["change"], location=EVERYWHERE)
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self.too_many(request, queryset):
            return
        result = lifecycle.cancel_many(ids=queryset)
        self.report(request, result, "cancelled", "only queued or processing jobs are cancelled")

    @admin.action(
        description="Run next (move to the front of the queue)",
        permissions=["change"],
        location=EVERYWHERE,
    )
    def run_next(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self.too_many(request, queryset):
            return
        result = lifecycle.run_next_many(ids=queryset)
        self.report(request, result, "moved to the front", "only queued jobs can be moved")

    @admin.action(description="Delete selected jobs", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if self.too_many(request, queryset):
            return None
        if not request.POST.get("post"):
            return confirm_delete(self, request, queryset)  # the confirmation page
        result = lifecycle.delete_many(ids=queryset)
        self.report(request, result, "deleted", "running jobs are not deleted: cancel them first")
        return None

    # -- the dashboard --------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("dashboard/", view, name="jobs_dashboard"), *super().get_urls()]

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
