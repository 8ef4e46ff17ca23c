"""Workflows in the admin: each with its state and its jobs by status; cancel one.

A workflow is its jobs, so the job permissions apply (``view_job`` to look,
``change_job`` to cancel); workflows are created by ``enqueue_workflow`` or
``POST /api/workflows``, never here. Cancelling goes through
``lifecycle.cancel_workflow``: what has not started is cancelled, running jobs finish.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join

from jobs import lifecycle
from jobs.admin.dashboard import stamp
from jobs.admin.jobs import badge
from jobs.models import Status, Workflow

# The order a workflow's page lists its jobs in: what needs attention first.
STATUS_ORDER = [
    Status.FAILED,
    Status.PROCESSING,
    Status.QUEUED,
    Status.WAITING,
    Status.CANCELLED,
    Status.DONE,
]


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "counts", "created"]
    search_fields = ["name"]
    fields = ["id", "name", "created", "state", "counts", "jobs_by_status"]
    readonly_fields = fields
    actions = ["cancel_workflows"]

    class Media:
        css = {"all": ["jobs/admin.css"]}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> Any:
        """Each page's workflows with their jobs counted in one query, not two per row."""
        changelist = super().get_changelist(request, **kwargs)

        class Counted(changelist):
            def get_results(self, request: HttpRequest) -> None:
                super().get_results(request)
                ids = [workflow.pk for workflow in self.result_list]
                counted = lifecycle.with_counts(Workflow.objects.filter(pk__in=ids))
                found = {workflow.pk: workflow for workflow in counted}
                self.result_list = [found[pk] for pk in ids]

        return Counted

    @admin.display(description="state")
    def state(self, workflow: Workflow) -> str:
        return lifecycle.workflow_state(workflow)["state"]

    @admin.display(description="jobs")
    def counts(self, workflow: Workflow) -> str:
        counts = lifecycle.workflow_state(workflow)["counts"]
        return format_html_join(
            " ", "{} {}", ((n, badge(s)) for s in STATUS_ORDER if (n := counts.get(s)))
        )

    @admin.display(description="created", ordering="created_at")
    def created(self, workflow: Workflow) -> str:
        return stamp(workflow.created_at)

    @admin.display(description="jobs by status")
    def jobs_by_status(self, workflow: Workflow) -> str:
        rank = {status: i for i, status in enumerate(STATUS_ORDER)}
        jobs = sorted(workflow.jobs.order_by("created_at"), key=lambda j: rank[j.status])
        return format_html_join(
            "",
            '<div>{} <a href="{}">{}</a> {} <span class="quiet">{}</span></div>',
            (
                (
                    badge(job.status),
                    reverse("admin:jobs_job_change", args=[job.pk]),
                    job.step,
                    job.task,
                    (job.error or "")[:120],
                )
                for job in jobs
            ),
        )

    @admin.action(permissions=["change"], description="Cancel what has not started")
    def cancel_workflows(self, request: HttpRequest, queryset: QuerySet) -> None:
        changed = sum(
            lifecycle.cancel_workflow(workflow_id=workflow.pk).changed for workflow in queryset
        )
        self.message_user(
            request,
            f"{changed} job{'s' if changed != 1 else ''} cancelled; running jobs finish.",
            messages.SUCCESS,
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("jobs.view_job")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("jobs.change_job")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.view_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # from the API or Python: a graph does not fit a form

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its jobs are deleted (or purged) as jobs
