"""The job changelist at scale: cheap filters, an estimated count, a cheap date hierarchy.

With millions of rows the stock changelist spends its time counting: ``COUNT(*)``
for the paginator, ``SELECT DISTINCT`` for every filter's choices and for each
level of the date hierarchy. Each helper here answers the same question from an
index or from the planner's statistics instead.
"""

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from jobs import tasks
from jobs.models import Queue, Status, Worker
from jobs.observability.stats import count_or_estimate, queued_queues

# Count at most this many rows exactly; past it, PostgreSQL's estimate stands in.
EXACT_COUNT_BELOW = 1_000


class EstimatedCountPaginator(Paginator):
    """Count up to ``EXACT_COUNT_BELOW`` rows exactly; past it the estimate drives the pages."""

    estimated = False

    @cached_property
    def count(self) -> int:
        count, self.estimated = count_or_estimate(self.object_list, EXACT_COUNT_BELOW)
        return count


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


class ErrorClassFilter(admin.SimpleListFilter):
    """The jobs whose last failure had this cause (``Job.error_class``); the failures view
    links here. Only the chosen cause is listed: the failures view is where causes are
    found, and listing them all would cost every page a scan."""

    title = "error class"
    parameter_name = "error_class"
    NONE = "(none)"  # failed without an error (none recorded)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.value(), self.value())] if self.value() else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        return queryset.filter(error_class=None if self.value() == self.NONE else self.value())


class DelayedFilter(admin.SimpleListFilter):
    """Queued jobs that are due now, or delayed: not claimed before their run-after."""

    title = "scheduled"
    parameter_name = "scheduled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("due", "Due (queued, runnable now)"), ("delayed", "Delayed (run-after later)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        queued = queryset.filter(status=Status.QUEUED)
        if self.value() == "due":
            return queued.filter(Q(run_after__isnull=True) | Q(run_after__lte=timezone.now()))
        if self.value() == "delayed":
            return queued.filter(run_after__gt=timezone.now())
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Queues of the registered tasks, of workers, of flow control and of queued jobs."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = {spec.queue for spec in tasks.registered().values()}
        values |= queued_queues() | set(Queue.objects.values_list("name", flat=True))
        for queues in Worker.objects.values_list("queues", flat=True):
            values.update(queues or [])
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
    DISTINCT``, a scan of every row in range, and under other filters even its
    first/last lookup can walk most of an index. This offers every period between
    the first and the last job in the selected year, month or day instead: two
    probes at the ends of the ``created_at`` index, whatever else is filtered.
    """

    def __init__(self, queryset: QuerySet, field: str) -> None:
        self.queryset = queryset
        self.field = field
        self._ends: dict[str, Any] | None = None

    def aggregate(self, **kwargs: Any) -> dict[str, Any]:
        return self.ends()

    def ends(self) -> dict[str, Any]:
        if self._ends is None:
            self._ends = self.queryset.aggregate(first=Min(self.field), last=Max(self.field))
        return self._ends

    def datetimes(self, field: str, kind: str) -> list[datetime]:
        ends = self.ends()
        if ends["first"] is None:
            return []
        first, last = timezone.localtime(ends["first"]), timezone.localtime(ends["last"])
        return list(_steps(_truncate(first, kind), last, kind))

    def dates(self, field: str, kind: str) -> list[Any]:
        return [day.date() for day in self.datetimes(field, kind)]


def _truncate(moment: datetime, kind: str) -> datetime:
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("month", "year"):
        start = start.replace(day=1)
    if kind == "year":
        start = start.replace(month=1)
    return start


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


def selected_period(params: dict[str, str], field: str) -> tuple[datetime, datetime] | None:
    """The [start, end) the hierarchy's year/month/day parameters select, or ``None``."""
    try:
        year = int(params[f"{field}__year"])
        month = int(params.get(f"{field}__month", 0))
        day = int(params.get(f"{field}__day", 0))
        start = datetime(year, month or 1, day or 1)
    except (KeyError, ValueError, OverflowError):
        return None
    if day:
        end = start + timedelta(days=1)
    elif month:
        end = start.replace(year=year + month // 12, month=month % 12 + 1)
    else:
        end = start.replace(year=year + 1)
    return timezone.make_aware(start), timezone.make_aware(end)


class CheapDateHierarchy:
    """A changelist as the date hierarchy tag sees it, with ``_RangeDates`` as its queryset."""

    def __init__(self, changelist: Any) -> None:
        self._changelist = changelist
        field = changelist.date_hierarchy
        jobs = changelist.root_queryset.order_by()
        period = selected_period(changelist.params, field)
        if period:
            jobs = jobs.filter(**{f"{field}__gte": period[0], f"{field}__lt": period[1]})
        self.queryset = _RangeDates(jobs, field)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)


# Sorting by these columns follows an index that starts with the column and goes on by
# creation time (``jobs_status_created_idx``, ``jobs_task_created_idx``,
# ``jobs_queue_created_idx``): the page is read in index order, never sorted whole. So do
# id and creation time. The other columns do not sort (a sort asked for by hand, ``?o=``,
# gives the default order): at millions of rows a sort without an index reads the table.
INDEXED_SORTS = ("status", "task", "queue")


# Columns no list column shows: a page reads them for nothing (tracebacks run to
# kilobytes, and JSON is decoded row by row). The job page reads the whole job.
UNLISTED = ("payload", "result", "traceback", "parent_results")


class IndexedChangeList(ChangeList):
    """A changelist whose column sorts each follow an index (``INDEXED_SORTS``)."""

    def get_results(self, request: HttpRequest) -> None:
        self.queryset = self.queryset.defer(*UNLISTED)
        super().get_results(request)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[Any]:
        ordering = super().get_ordering(request, queryset)
        first = ordering[0] if ordering and isinstance(ordering[0], str) else ""
        if first.lstrip("-") in ("created_at", "id", "pk"):
            return ordering
        if first.lstrip("-") not in INDEXED_SORTS:  # asked for by hand (?o=): not served
            return ["-created_at", "-pk"]
        # The index's own order after the column (created_at descending, read backwards
        # for a descending column), then the primary key as the tie-break.
        if first.startswith("-"):
            return [first, "created_at", "pk"]
        return [first, "-created_at", "-pk"]
