"""The job admin's form: status edits checked against the lifecycle, JSON shown indented."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from jobs import lifecycle, tasks
from jobs.exceptions import InvalidPayload, JobsError, UnknownTask
from jobs.models import Job, JobAttempt, Status

EDITABLE_FIELDS = ["payload", "queue", "priority", "run_after", "max_attempts", "timeout"]


class PrettyJSONField(forms.JSONField):
    """A JSON field shown indented, so a payload reads as structure, not one long line."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


def allowed_targets(current: str) -> list[str]:
    return sorted(to for (frm, to) in lifecycle.MANUAL_TRANSITIONS if frm == current)


class JobForm(forms.ModelForm):
    status = forms.ChoiceField(choices=Status.choices)
    payload = PrettyJSONField(required=False, widget=forms.Textarea(attrs={"rows": 8}))

    class Meta:
        model = Job
        fields = ["task", *EDITABLE_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            current = self.instance.status
            self.fields["status"].initial = current
            self.fields["status"].help_text = (
                f"Changed through the lifecycle. From {current}: "
                f"{', '.join(allowed_targets(current)) or 'no change allowed'}."
            )
        else:
            self.fields["status"].disabled = True
            self.fields["status"].initial = Status.QUEUED

    def clean_status(self) -> str:
        """Refuse, as a form error, any edit the lifecycle's manual table does not allow."""
        new = self.cleaned_data["status"]
        if self.instance._state.adding:
            return Status.QUEUED
        current = Job.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
        if current is not None and new != current:
            if (current, new) not in lifecycle.MANUAL_TRANSITIONS:
                raise forms.ValidationError(
                    f"A {current} job cannot be set to {new}. "
                    f"Allowed: {', '.join(allowed_targets(current)) or 'none'}."
                )
        return new

    def clean(self) -> dict[str, Any]:
        """Check the payload against the task's schema, as the API does."""
        cleaned = super().clean()
        try:
            tasks.get(cleaned.get("task", "")).validate_payload(cleaned.get("payload"))
        except InvalidPayload as exc:
            self.add_error("payload", str(exc.errors))
        except UnknownTask:
            pass  # reported by clean_task
        return cleaned

    def clean_task(self) -> str:
        task = self.cleaned_data["task"]
        try:
            lifecycle.validate_task(task)
        except JobsError as exc:
            raise forms.ValidationError(str(exc)) from None
        return task


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    verbose_name_plural = "attempt history (attempts that did not succeed)"
    fields = ["number", "outcome", "worker_id", "started_at", "finished_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
