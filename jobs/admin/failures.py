"""The failures view: the failure queue grouped by cause (error class) and task.

Each group shows how many jobs failed, when the first and the last of them failed,
how many jobs of the same cause are still retrying, and the latest one's error and
traceback. Its buttons post to the job list filtered to the group ("apply to all N
matching": ``JobAdmin``'s confirmation page), so a group is acted on exactly as any
filter is, through ``lifecycle.apply_to_all``.

On PostgreSQL the groups come from a skip scan of the partial index
``jobs_failed_cause_idx`` (failed jobs only, by error class, task and finish time): one
probe per group, then per group a count that stops at ``EXACT_FAILED`` and two probes
for its first and last failure. Past the cap the count is the planner's estimate
(marked ≈; the extended statistics of migration 0012 make it close), so the page's cost
grows with the number of groups, not with the failures: grouping 400,000 failed jobs
exactly took 126 ms. Elsewhere one grouped read of that index counts exactly. Then one
probe per group for the samples, and one read of ``jobs_retrying_cause_idx``
(unfinished jobs whose last attempt failed) for the retrying counts.
"""

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.db import connections, transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import reverse

from jobs.admin.changelist import ErrorClassFilter
from jobs.models import RUNNABLE_STATUSES, Job, Status
from jobs.observability.stats import estimate_count

NO_CAUSE = ErrorClassFilter.NONE

# The most groups one page shows (the largest first).
MAX_GROUPS = 100
# Each group's failures are counted exactly up to this many (PostgreSQL), then estimated.
EXACT_FAILED = 1_000
# The groups the skip scan finds at most (each costs a probe and a capped count).
MAX_SCANNED = 1_000

TABLE = Job._meta.db_table
CAUSE_STATISTICS = "jobs_job_cause_stats"  # migration 0012
# One probe per (error class, task) pair: each step takes the next pair after the last.
# A cause-less failure (error_class NULL) is its own scan, as a row comparison with NULL
# finds nothing. Every probe orders by the index's own columns: asked for a minimum, or
# ordered by task alone, the planner may walk another index (finish time, task) through
# every failed job, or every job, looking for a match that may not exist. Each group: a
# count capped at %(cap)s, and its first and last failure (its range's ends).
_GROUP = f"""
    (SELECT count(*) FROM (SELECT 1 FROM {TABLE} j WHERE j.status = 'failed'
        AND j.error_class {{match}} AND j.task = g.task LIMIT %(cap)s) capped),
    (SELECT j.finished_at FROM {TABLE} j WHERE j.status = 'failed'
        AND j.error_class {{match}} AND j.task = g.task AND j.finished_at IS NOT NULL
        ORDER BY j.error_class, j.task, j.finished_at LIMIT 1),
    (SELECT j.finished_at FROM {TABLE} j WHERE j.status = 'failed'
        AND j.error_class {{match}} AND j.task = g.task AND j.finished_at IS NOT NULL
        ORDER BY j.error_class DESC, j.task DESC, j.finished_at DESC LIMIT 1)
"""  # noqa: S608 (the table's name, a constant)
CAUSES = f"""
WITH RECURSIVE g(error_class, task) AS (
    (SELECT error_class, task FROM {TABLE} WHERE status = 'failed' AND error_class IS NOT NULL
     ORDER BY error_class, task LIMIT 1)
    UNION ALL
    SELECT n.error_class, n.task FROM g, LATERAL (
        SELECT error_class, task FROM {TABLE} WHERE status = 'failed'
        AND error_class IS NOT NULL AND (error_class, task) > (g.error_class, g.task)
        ORDER BY error_class, task LIMIT 1) n
)
SELECT g.error_class, g.task, {_GROUP.format(match="= g.error_class")} FROM g LIMIT %(scanned)s
"""  # noqa: S608
NO_CAUSE_TASKS = f"""
WITH RECURSIVE g(task) AS (
    (SELECT task FROM {TABLE} WHERE status = 'failed' AND error_class IS NULL
     ORDER BY error_class, task LIMIT 1)
    UNION ALL
    SELECT n.task FROM g, LATERAL (
        SELECT task FROM {TABLE} WHERE status = 'failed' AND error_class IS NULL
        AND task > g.task ORDER BY error_class, task LIMIT 1) n
)
SELECT NULL, g.task, {_GROUP.format(match="IS NULL")} FROM g LIMIT %(scanned)s
"""  # noqa: S608


@dataclass
class Group:
    error_class: str | None
    task: str
    failed: int
    first: datetime | None
    last: datetime | None
    retrying: int = 0
    sample: Job | None = None
    estimated: bool = False  # ``failed`` is the planner's estimate

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
    if connections[failed.db].vendor == "postgresql":
        found = _capped_groups(failed, limit)
    else:
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


def _capped_groups(failed: QuerySet, limit: int) -> list[Group]:
    """Every group from the skip scans, each counted up to ``EXACT_FAILED`` then
    estimated; the largest ``limit``."""
    found = []
    params = {"cap": EXACT_FAILED, "scanned": MAX_SCANNED}
    with transaction.atomic(using=failed.db), connections[failed.db].cursor() as cursor:
        # The planner prices the capped counts as if each read its group whole and would
        # compile the query (JIT): 280 ms spent compiling a query that runs in 10.
        cursor.execute("SET LOCAL jit = off")
        for sql in (CAUSES, NO_CAUSE_TASKS):
            cursor.execute(sql, params)
            for cause, task, n, first, last in cursor.fetchall():
                found.append(Group(cause, task, n, first, last))
    common = _common_causes(failed.db) if any(g.failed >= EXACT_FAILED for g in found) else {}
    for group in found:
        if group.failed >= EXACT_FAILED:
            estimate = common.get((group.error_class, group.task))
            if estimate is None:
                one = failed.filter(error_class=group.error_class, task=group.task)
                estimate = estimate_count(one) or 0
            group.failed = max(estimate, group.failed)
            group.estimated = True
    found.sort(key=lambda g: (-g.failed, g.error_class is None, g.error_class or "", g.task))
    return found[:limit]


def _common_causes(using: str) -> dict[tuple[str | None, str], int]:
    """Failed jobs per (error class, task) as the planner knows them: the most common
    combinations that ANALYZE keeps in the statistics of migration 0012, read in one
    query (an ``EXPLAIN`` per group costs more to build than to run)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT s.attnames, s.most_common_vals, s.most_common_freqs, c.reltuples "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_stats_ext s ON s.schemaname = n.nspname AND s.tablename = c.relname "
            "WHERE c.oid = %s::regclass AND s.statistics_name = %s",
            [TABLE, CAUSE_STATISTICS],
        )
        row = cursor.fetchone()
    if row is None or row[1] is None:  # not analyzed yet
        return {}
    names, items, freqs, rows = row
    found = {}
    for values, freq in zip(items, freqs, strict=True):
        item = dict(zip(names, values, strict=True))
        if item["status"] == Status.FAILED:
            found[(item["error_class"], item["task"])] = round(freq * max(rows, 0))
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
