"""The failures view: the failure queue grouped by cause (error class) and task.

Each group shows how many jobs failed, when the first and the last of them failed,
how many jobs of the same cause are still retrying, and the latest one's error and
traceback. Its buttons post to the job list filtered to the group ("apply to all N
matching": ``JobAdmin``'s confirmation page), so a group is acted on exactly as any
filter is, through ``lifecycle.apply_to_all``.

One grouped read of the partial index ``jobs_failed_cause_idx`` (failed jobs only, by
error class, task and finish time), one for the retrying jobs, one for the samples.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Max, Min, OuterRef, Subquery
from django.urls import reverse

from jobs.admin.changelist import ErrorClassFilter
from jobs.models import ACTIVE_STATUSES, Job, Status

NO_CAUSE = ErrorClassFilter.NONE

# The most groups one page shows (the largest first).
MAX_GROUPS = 100


@dataclass
class Group:
    error_class: str | None
    task: str
    failed: int
    first: datetime | None
    last: datetime | None
    retrying: int = 0
    sample: Job | None = None

    @property
    def query(self) -> str:
        """The job list's filter for this group (any status: the actions choose)."""
        return urlencode({"task": self.task, "error_class": self.error_class or NO_CAUSE})

    @property
    def failed_url(self) -> str:
        return f"{reverse('admin:jobs_job_changelist')}?status__exact=failed&{self.query}"

    @property
    def last_line(self) -> str:
        """The exception itself: the traceback's last line, else the error's first."""
        text = (self.sample and (self.sample.traceback or self.sample.error)) or ""
        lines = text.strip().splitlines()
        return (lines[-1] if self.sample and self.sample.traceback else lines[0]) if lines else ""


def groups(limit: int = MAX_GROUPS) -> list[Group]:
    """The failure queue's causes, most failures first."""
    failed = Job.objects.filter(status=Status.FAILED).order_by()
    latest = failed.filter(error_class=OuterRef("error_class"), task=OuterRef("task"))
    rows = (
        failed.values("error_class", "task")
        .annotate(
            failed=Count("pk"),
            first=Min("finished_at"),
            last=Max("finished_at"),
            sample=Subquery(latest.order_by("-finished_at").values("pk")[:1]),
        )
        .order_by("-failed", "error_class", "task")[:limit]
    )
    found = [Group(**row) for row in _samples(list(rows))]
    retrying = (
        Job.objects.filter(status__in=ACTIVE_STATUSES, error_class__isnull=False)
        .order_by()
        .values_list("error_class", "task")
        .annotate(n=Count("pk"))
    )
    counts = {(cause, task): n for cause, task, n in retrying}
    for group in found:
        group.retrying = counts.get((group.error_class, group.task), 0)
    return found


def _samples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace each row's sample id by the job (its error and traceback), in one query."""
    fields = ["id", "task", "error", "traceback", "finished_at"]
    jobs = Job.objects.only(*fields).in_bulk([r["sample"] for r in rows if r["sample"]])
    return [{**row, "sample": jobs.get(row["sample"])} for row in rows]
