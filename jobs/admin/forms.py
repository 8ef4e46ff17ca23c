"""The job admin's form: edits checked against the lifecycle and the page as it was opened,
JSON shown indented, payload errors said per field."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from jobs import lifecycle
from jobs.admin.dashboard import stamp
from jobs.exceptions import InvalidInput
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
        if isinstance(self.fields["status"], forms.ChoiceField):
            # The drop-down offers only what the lifecycle allows from here; the field
            # still accepts any status, so a crafted post meets clean()'s explanation.
            allowed = {current, *allowed_targets(current)}
            widget = self.fields["status"].widget
            widget.choices = [c for c in Status.choices if c[0] in allowed]
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
        """Check a status edit against the status the page showed, and the job against
        the rules every new job passes (``lifecycle.check_job``), as the API does."""
        cleaned = super().clean()
        if not self.instance._state.adding:
            self.clean_status_edit(cleaned)
        if "task" not in self.errors:  # else the task field says what is wrong
            task = cleaned.get("task") or self.instance.task
            fields = {name: cleaned[name] for name in EDITABLE_FIELDS if name in cleaned}
            try:
                lifecycle.check_job(task=task, **fields)
            except InvalidInput as exc:
                add_invalid(self, exc)
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


def add_invalid(form: forms.BaseForm, exc: InvalidInput) -> None:
    """Show the core's refusal on the form, one readable line per problem: each on its
    field (``to.1: Enter a valid email address.`` under the payload), else above the form."""
    for key, texts in exc.errors.items():
        field, _, inner = key.partition(".")
        inner = "" if inner == "non_field_errors" else inner
        if field in form.fields:
            form.add_error(field, [f"{inner}: {text}" if inner else text for text in texts])
        else:
            form.add_error(None, [f"{key}: {text}" for text in texts])


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    verbose_name_plural = "attempt history (attempts that did not succeed)"
    fields = ["number", "outcome", "worker_id", "started", "finished", "seconds", "error", "trace"]
    readonly_fields = fields

    @admin.display(description="started")
    def started(self, attempt: JobAttempt) -> str:
        return stamp(attempt.started_at)

    @admin.display(description="finished")
    def finished(self, attempt: JobAttempt) -> str:
        return stamp(attempt.finished_at)

    @admin.display(description="duration")
    def seconds(self, attempt: JobAttempt) -> str:
        if attempt.started_at is None or attempt.finished_at is None:
            return "-"
        return f"{(attempt.finished_at - attempt.started_at).total_seconds():.3f} s"

    @admin.display(description="traceback")
    def trace(self, attempt: JobAttempt) -> str:
        """The attempt's traceback, folded under its last line (the exception itself)."""
        if not attempt.traceback:
            return "-"
        last = attempt.traceback.strip().splitlines()[-1]
        return format_html(
            '<details><summary>{}</summary><pre class="job-pre">{}</pre></details>',
            last,
            attempt.traceback,
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
