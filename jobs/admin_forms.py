"""The job admin's form: edits checked against the lifecycle and the page as it was opened,
JSON shown indented, payload errors said per field."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from jobs import lifecycle, tasks
from jobs.exceptions import InvalidPayload, JobsError, UnknownTask
from jobs.models import Job, JobAttempt, Status

EDITABLE_FIELDS = list(lifecycle.EDITABLE_FIELDS)
# Blank on the add form means the task's default (its queue, priority, attempts, timeout).
TASK_DEFAULTS = ["queue", "priority", "max_attempts", "timeout"]


class PrettyJSONField(forms.JSONField):
    """A JSON field shown indented, so a payload reads as structure, not one long line."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


def allowed_targets(current: str) -> list[str]:
    return sorted(to for (frm, to) in lifecycle.MANUAL_TRANSITIONS if frm == current)


def payload_messages(errors: Any, where: str = "") -> list[str]:
    """Say a task schema's errors (DRF's nested dicts and lists, or JSON Schema's
    ``{path: [message]}``) as one readable line per problem: ``subject: This field is required.``"""
    if isinstance(errors, dict):
        return [
            line
            for key, value in errors.items()
            for line in payload_messages(
                value, where if key in ("non_field_errors", "payload") else f"{where}{key}."
            )
        ]
    if isinstance(errors, list | tuple):
        if all(isinstance(item, str) for item in errors):
            return [f"{where.rstrip('.')}: {item}" if where else str(item) for item in errors]
        return [
            line
            for index, item in enumerate(errors)
            for line in payload_messages(item, f"{where}{index}.")
        ]
    return [f"{where.rstrip('.')}: {errors}" if where else str(errors)]


class JobForm(forms.ModelForm):
    """The job page's form.

    On a job's page every editable field (the status too) carries the value the page
    showed in a hidden input, so ``changed_data`` holds what the operator changed, and
    the status shown is the one the save is a compare-and-set on (``lifecycle.edit``):
    a page opened before a worker finished the job changes nothing.
    """

    status = forms.ChoiceField(choices=Status.choices)
    payload = PrettyJSONField(required=False, widget=forms.Textarea(attrs={"rows": 8}))

    class Meta:
        model = Job
        fields = ["task", *EDITABLE_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            self.fields["status"].disabled = True
            self.fields["status"].initial = Status.QUEUED
            for name in [f for f in TASK_DEFAULTS if f in self.fields]:
                self.fields[name].required = False
                self.fields[name].help_text = "Blank: the task's default."
                self.initial[name] = None
            return
        self.initial["status"] = self.instance.status
        # A view-only operator's form has no editable fields: only the declared ones.
        for name in [f for f in ["status", *EDITABLE_FIELDS] if f in self.fields]:
            self.fields[name].show_hidden_initial = True
            if self.is_bound and (shown := self.opened_with(name)) is not None:
                # Shown again (after an error), the page keeps what it was opened with.
                self.initial[name] = shown
        current = self.initial["status"]
        self.fields["status"].help_text = (
            f"Changed through the lifecycle. From {current}: "
            f"{', '.join(allowed_targets(current)) or 'no change allowed'}."
        )

    def opened_with(self, name: str) -> Any:
        """The value of ``name`` the page showed when it was opened (None if it did not say)."""
        field = self.fields[name]
        raw = field.hidden_widget().value_from_datadict(
            self.data, self.files, self.add_initial_prefix(name)
        )
        if raw is None:
            return None
        try:
            return field.to_python(raw)
        except forms.ValidationError:
            return None

    def clean(self) -> dict[str, Any]:
        """Check a status edit against the status the page showed, and the payload against
        the task's schema, as the API does."""
        cleaned = super().clean()
        if not self.instance._state.adding:
            self.clean_status_edit(cleaned)
        try:
            tasks.get(cleaned.get("task", "")).validate_payload(cleaned.get("payload"))
        except InvalidPayload as exc:
            self.add_error("payload", payload_messages(exc.errors))
        except UnknownTask:
            pass  # reported by clean_task
        return cleaned

    def clean_status_edit(self, cleaned: dict[str, Any]) -> None:
        """Refuse, as a form error, a status edit the lifecycle's manual table does not
        allow from the status the page showed."""
        opened = self.opened_with("status")
        if opened not in Status.values:
            self.add_error(None, "This page is out of date: reload it, then edit the job.")
            return
        new = cleaned.get("status")
        if new and new != opened and (opened, new) not in lifecycle.MANUAL_TRANSITIONS:
            self.add_error(
                "status",
                f"A {opened} job cannot be set to {new}. "
                f"Allowed: {', '.join(allowed_targets(opened)) or 'none'}.",
            )

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
