"""The operator's console: jobs in the Django admin.

Status changes, from the change form or an action, go through ``jobs.lifecycle``;
a refused change is reported, never forced.
"""

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest

from jobs import lifecycle, runner
from jobs.conf import conf
from jobs.exceptions import InvalidPayload, TransitionRefused
from jobs.models import Job, JobAttempt, Status

EDITABLE_FIELDS = ["payload", "queue", "priority", "run_after", "max_attempts", "timeout"]


class JobForm(forms.ModelForm):
    status = forms.ChoiceField(choices=Status.choices, help_text="Changed through the lifecycle.")

    class Meta:
        model = Job
        fields = ["task", *EDITABLE_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["status"].initial = self.instance.status
        else:
            self.fields["status"].disabled = True
            self.fields["status"].initial = Status.QUEUED

    def clean_status(self) -> str:
        new = self.cleaned_data["status"]
        current = self.instance.status if self.instance.pk else Status.QUEUED
        if new != current and (current, new) not in lifecycle.MANUAL_TRANSITIONS:
            allowed = sorted(to for (frm, to) in lifecycle.MANUAL_TRANSITIONS if frm == current)
            raise forms.ValidationError(
                f"A {current} job cannot be set to {new}. Allowed: {', '.join(allowed) or 'none'}."
            )
        return new

    def clean_payload(self) -> Any:
        payload = self.cleaned_data["payload"]
        try:
            lifecycle.validate_payload(payload)
        except InvalidPayload as exc:
            raise forms.ValidationError(str(exc)) from None
        return payload

    def clean_task(self) -> str:
        task = self.cleaned_data["task"]
        try:
            lifecycle.validate_task(task)
        except Exception as exc:
            raise forms.ValidationError(str(exc)) from None
        return task


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ["number", "outcome", "worker_id", "started_at", "finished_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    form = JobForm
    list_display = [
        "id",
        "task",
        "status",
        "queue",
        "priority",
        "attempts",
        "created_at",
        "updated_at",
    ]
    list_filter = ["status", "queue", "task"]
    search_fields = ["id", "payload"]
    readonly_fields = [
        "id",
        "attempts",
        "result",
        "error",
        "traceback",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "worker_id",
        "lease_expires_at",
        "idempotency_key",
    ]
    inlines = [JobAttemptInline]
    actions = ["cancel_jobs", "retry_jobs", "run_jobs_now"]
    list_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Search an exact id, or text inside the payload."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        text = queryset.annotate(payload_text=Cast("payload", TextField()))
        return text.filter(payload_text__icontains=term), False

    def save_model(self, request: HttpRequest, obj: Job, form: JobForm, change: bool) -> None:
        if not change:
            job, _ = lifecycle.enqueue(
                task=obj.task, **{f: getattr(obj, f) for f in EDITABLE_FIELDS}
            )
            form.instance = job
            return
        obj.save(update_fields=[*EDITABLE_FIELDS, "updated_at"])
        new_status = form.cleaned_data["status"]
        if new_status != obj.status:
            try:
                lifecycle.set_status(job_id=obj.pk, status=new_status)
            except TransitionRefused as refused:
                self.message_user(request, f"Status not changed: {refused}", messages.ERROR)

    def _apply(self, request: HttpRequest, queryset: QuerySet, verb: Any, done: str) -> None:
        if (count := queryset.count()) > conf.MAX_BULK:
            self.message_user(
                request,
                f"{count} jobs selected; one action handles at most {conf.MAX_BULK} "
                "(JOBS_MAX_BULK). Nothing changed.",
                messages.ERROR,
            )
            return
        changed, skipped = 0, []
        for job_id in queryset.values_list("pk", flat=True):
            try:
                verb(job_id=job_id)
                changed += 1
            except TransitionRefused as refused:
                skipped.append(str(refused))
        message = f"{changed} job(s) {done}."
        if skipped:
            reasons = "; ".join(sorted(set(skipped))[:5])
            message += f" {len(skipped)} skipped: {reasons}"
        self.message_user(request, message, messages.WARNING if skipped else messages.SUCCESS)

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, lifecycle.cancel, "cancelled")

    @admin.action(description="Retry selected jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, lifecycle.retry, "requeued")

    @admin.action(description="Run selected jobs now (in this request)", permissions=["change"])
    def run_jobs_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, runner.run_now, "run")
