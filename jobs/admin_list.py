"""The job changelist at scale: cheap filters, an estimated count, a cheap date hierarchy.

With millions of rows the stock changelist spends its time counting: ``COUNT(*)``
for the paginator, ``SELECT DISTINCT`` for every filter's choices and for each
level of the date hierarchy. Each helper here answers the same question from an
index or from the planner's statistics instead.
"""

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Max, Min, QuerySet
from django.db.models.functions import Trunc
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from jobs import tasks
from jobs.models import Job, Status

# Count at most this many rows exactly; past it, PostgreSQL's estimate stands in.
EXACT_COUNT_BELOW = 1_000


def estimate_count(queryset: QuerySet) -> int | None:
    """Return the planner's row estimate for ``queryset`` on PostgreSQL, else ``None``."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def count_or_estimate(queryset: QuerySet, cap: int) -> tuple[int, bool]:
    """Count up to ``cap`` rows exactly; past it, use PostgreSQL's estimate. Say which.

    The capped count reads at most ``cap`` rows, so a large result never costs a
    full ``COUNT(*)``. Other databases count exactly.
    """
    queryset = queryset.order_by()
    if connections[queryset.db].vendor != "postgresql":
        return queryset.count(), False
    capped = queryset[:cap].count()
    if capped < cap:
        return capped, False
    return max(estimate_count(queryset) or 0, capped), True


class EstimatedCountPaginator(Paginator):
    """Count up to ``EXACT_COUNT_BELOW`` rows exactly; past it the estimate drives the pages."""

    @cached_property
    def count(self) -> int:
        return count_or_estimate(self.object_list, EXACT_COUNT_BELOW)[0]


class HasErrorFilter(admin.SimpleListFilter):
    title = "has error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(error__isnull=False)
        if self.value() == "no":
            return queryset.filter(error__isnull=True)
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Queues of the registered tasks and of queued jobs (read from the claim index)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        queued = Job.objects.filter(status=Status.QUEUED).order_by().values_list("queue")
        values = {spec.queue for spec in tasks.registered().values()}
        values |= {queue for (queue,) in queued.distinct()}
        return [(value, value) for value in sorted(values | {self.value()} - {None})]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class TaskFilter(admin.SimpleListFilter):
    """The registered tasks: only those can run, so only those are worth a link."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = set(tasks.registered()) | {self.value()} - {None}
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(task=self.value()) if self.value() else queryset


class _RangeDates:
    """Stand-in for the changelist queryset in the date hierarchy.

    Django lists the days (or months, years) that have rows with ``SELECT
    DISTINCT``, a scan of every row in range. This offers every period between
    the first and the last row instead, found at the two ends of an index.
    """

    def __init__(self, queryset: QuerySet) -> None:
        self.queryset = queryset

    def aggregate(self, **kwargs: Any) -> dict[str, Any]:
        return self.queryset.aggregate(**kwargs)

    def datetimes(self, field: str, kind: str) -> list[datetime]:
        return self._periods(field, kind)

    def dates(self, field: str, kind: str) -> list[datetime]:
        return [day.date() for day in self._periods(field, kind)]

    def _periods(self, field: str, kind: str) -> list[datetime]:
        ends = self.queryset.aggregate(
            first=Trunc(Min(field), kind, tzinfo=timezone.get_current_timezone()),
            last=Max(field),
        )
        if ends["first"] is None:
            return []
        return list(
            _steps(timezone.localtime(ends["first"]), timezone.localtime(ends["last"]), kind)
        )


def _steps(first: datetime, last: datetime, kind: str) -> Iterator[datetime]:
    current = first
    while current <= last:
        yield current
        if kind == "day":
            current = timezone.make_aware(
                datetime.combine(current.date() + timedelta(days=1), time())
            )
        elif kind == "month":
            year, month = divmod(current.month, 12)
            current = current.replace(year=current.year + year, month=month + 1)
        else:
            current = current.replace(year=current.year + 1)


class CheapDateHierarchy:
    """A changelist as the date hierarchy tag sees it, with ``_RangeDates`` as its queryset."""

    def __init__(self, changelist: Any) -> None:
        self._changelist = changelist
        self.queryset = _RangeDates(changelist.queryset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)
