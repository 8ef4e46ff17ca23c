"""List filters for ``GET /api/jobs``."""

import django_filters

from jobs.models import Job, Status


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Status.choices)
    queue = django_filters.CharFilter()
    task = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "queue", "task", "created_after", "created_before"]
