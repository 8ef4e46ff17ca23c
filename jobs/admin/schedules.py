"""Recurring jobs in the admin: schedules, with "run now" and enable/disable actions."""

import copy
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import construct_instance
from django.http import HttpRequest
from django.utils.html import format_html

from jobs import schedules
from jobs.admin.dashboard import stamp
from jobs.admin.forms import add_invalid
from jobs.exceptions import InvalidInput, InvalidJob
from jobs.models import Schedule


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = [
            "name",
            "cron",
            "timezone",
            "task",
            "payload",
            "queue",
            "priority",
            "enabled",
            "catch_up",
        ]

    def clean(self) -> dict[str, Any]:
        """Check the schedule as saving it will (``schedules.check``), as form errors."""
        cleaned = super().clean()
        if not self.errors:  # else the fields say what is wrong first
            try:
                schedules.check(construct_instance(self, copy.copy(self.instance)))
            except InvalidInput as exc:
                add_invalid(self, exc)
        return cleaned


def _zone(schedule: Schedule) -> ZoneInfo | None:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = [
        "name",
        "timetable",
        "task",
        "queue",
        "enabled",
        "catch_up",
        "last_fire",
        "next_fire",
    ]
    list_filter = ["enabled", "task", "queue"]
    search_fields = ["name", "task"]
    readonly_fields = ["last_fire", "next_fire", "created_at", "updated_at"]
    actions = ["run_now", "enable", "disable"]

    class Media:
        css = {"all": ["jobs/admin.css"]}

    @admin.display(description="cron (time zone)", ordering="cron")
    def timetable(self, schedule: Schedule) -> str:
        """The cron string never wraps mid-field; its zone under it."""
        return format_html(
            '<code class="job-cron">{}</code><br><span class="job-zone">{}</span>',
            schedule.cron,
            schedule.timezone,
        )

    @admin.display(description="last fire", ordering="last_fire_at")
    def last_fire(self, schedule: Schedule) -> str:
        return stamp(schedule.last_fire_at, _zone(schedule))

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, schedule: Schedule) -> str:
        """In the schedule's own time zone, named (the cron string's hours are in it)."""
        return stamp(schedule.next_fire_at, _zone(schedule))

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        schedules.save(obj)

    @admin.action(
        description="Run selected schedules now (queue a job each)", permissions=["change"]
    )
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        queued, skipped = 0, []
        for schedule_id in queryset.values_list("pk", flat=True):
            try:
                schedules.run_now(schedule_id=schedule_id)
                queued += 1
            except InvalidJob as exc:
                skipped.append(str(exc))
        message = f"{queued} job(s) queued."
        if skipped:
            message += f" {len(skipped)} skipped: {'; '.join(sorted(set(skipped))[:5])}"
        self.message_user(request, message, messages.WARNING if skipped else messages.SUCCESS)

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> None:
        changed, invalid = 0, []
        for pk, name in queryset.values_list("pk", "name"):
            try:
                changed += schedules.set_enabled(schedule_id=pk, enabled=enabled)
            except InvalidInput as exc:
                invalid.append(f"{name}: {exc}")
        skipped = queryset.count() - changed - len(invalid)
        word = "enabled" if enabled else "disabled"
        message = f"{changed} schedule(s) {word}."
        if skipped:
            message += f" {skipped} skipped: already {word}."
        if invalid:
            message += f" {len(invalid)} not enabled (invalid): {'; '.join(invalid[:5])}"
        self.message_user(request, message, messages.WARNING if invalid else messages.SUCCESS)
