"""List filters for ``GET /api/jobs`` and ``GET /api/schedules``."""

from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field

from jobs.models import Job, Schedule, Status


class PresentIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, in UTC; given empty, an error rather than "no filter"."""

    def clean(self, value: Any) -> Any:
        if value == "":
            raise forms.ValidationError("Enter a date and time, or leave the parameter out.")
        cleaned = super().clean(value)
        if cleaned is None:
            return None
        try:
            # In UTC: PostgreSQL refuses offsets beyond 15:59 that ISO 8601 allows.
            return cleaned.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("The date and time is out of range.") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = PresentIsoDateTimeField


@extend_schema_field({"type": "string", "pattern": "^[^\\u0000]*$"})
class TextFilter(django_filters.CharFilter):
    """Exact text; a NUL character is a 400 (the form field refuses it), as documented."""


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Status.choices)
    queue = TextFilter()
    task = TextFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "queue", "task", "created_after", "created_before"]


@extend_schema_field({"type": "string", "enum": ["true", "false", ""]})
class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """``true`` or ``false`` (empty: no filter); anything else is a 400, not ignored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("choices", [("true", "true"), ("false", "false")])
        kwargs.setdefault("coerce", lambda value: value == "true")
        super().__init__(*args, **kwargs)


class ScheduleFilter(django_filters.FilterSet):
    enabled = StrictBooleanFilter()
    queue = TextFilter()
    task = TextFilter()

    class Meta:
        model = Schedule
        fields = ["enabled", "task", "queue"]
