"""The failures view: the failure queue grouped by cause (error class) and task.

Each group shows how many jobs failed, when the first and the last of them failed,
how many jobs of the same cause are still retrying, and the latest one's error and
traceback. Its buttons post to the job list filtered to the group ("apply to all N
matching": ``JobAdmin``'s confirmation page), so a group is acted on exactly as any
filter is, through ``lifecycle.apply_to_all``.

One grouped read of the partial index ``jobs_failed_cause_idx`` (failed jobs only, by
error class, task and finish time), one probe per group for the samples, and one read
of ``jobs_retrying_cause_idx`` (unfinished jobs whose last attempt failed) for the
retrying counts.
"""

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import reverse

from jobs.admin.changelist import ErrorClassFilter
from jobs.models import RUNNABLE_STATUSES, Job, Status

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
    # COUNT(*), not COUNT(id): the partial index holds every column read (index-only).
    rows = (
        failed.values("error_class", "task")
        .annotate(failed=Count("*"), first=Min("finished_at"), last=Max("finished_at"))
        .order_by("-failed", "error_class", "task")[:limit]
    )
    found = [Group(**row) for row in rows]
    _add_samples(found)
    counts = {(cause, task): n for cause, task, n in retrying()}
    for group in found:
        group.retrying = counts.get((group.error_class, group.task), 0)
    return found


def retrying() -> QuerySet:
    """(error class, task, count) of the jobs to run again after a failure: one read of
    the partial index ``jobs_retrying_cause_idx``."""
    return (
        Job.objects.filter(status__in=RUNNABLE_STATUSES, error_class__isnull=False)
        .order_by()
        .values_list("error_class", "task")
        .annotate(n=Count("*"))
    )


def _add_samples(found: list[Group]) -> None:
    """Give each group its latest job (error and traceback), in one query: one probe of
    the failures index per group, at the group's last finish time."""
    if not found:
        return
    latest = Q()
    for group in found:
        latest |= Q(error_class=group.error_class, task=group.task, finished_at=group.last)
    fields = ["id", "task", "error", "error_class", "traceback", "finished_at"]
    for job in Job.objects.filter(latest, status=Status.FAILED).only(*fields).order_by():
        for group in found:
            key = (group.error_class, group.task, group.last)
            if group.sample is None and key == (job.error_class, job.task, job.finished_at):
                group.sample = job
