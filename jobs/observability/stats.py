"""Queue statistics, cheap enough to compute on every request at millions of rows.

Every query reads a bounded part of the table, never all of it:

- queued, processing and waiting jobs per queue are counted exactly: active jobs are few
  next to finished ones, and partial indexes cover them; the age of each queue's
  oldest due queued job (its *lag*) is one index probe per queue with queued jobs.
  The admin's pages count each queue's queued jobs exactly up to a cap
  (``QUEUED_EXACT_LIMIT``) and estimate past it on PostgreSQL: a backlog of 200,000 jobs
  spread over a ten-million-row table costs an exact count 200,000 row visits;
- on PostgreSQL, done, failed and cancelled jobs are counted exactly below
  ``JOBS_STATS_EXACT_LIMIT`` per status (a scan that stops at the limit); from
  there on the count is the planner's estimate, marked ``"exact": false``. SQLite,
  the single-machine database, counts them exactly;
- jobs finished (done) and failed in the last 1, 5 and 60 minutes are exact,
  read from the partial index on ``finished_at``.
"""

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from jobs.conf import conf
from jobs.models import ACTIVE_STATUSES, DUE_AT, FINISHED_STATUSES, Job, Status, Worker

WINDOWS = {"last_1m": 60, "last_5m": 300, "last_60m": 3600}
# The admin's per-queue queued counts: exact up to this many, then the planner's estimate.
QUEUED_EXACT_LIMIT = 1_000
RECENT_STATUSES = (Status.DONE, Status.FAILED)


def snapshot(*, now: datetime | None = None, cap: int | None = None) -> dict[str, Any]:
    """Return the queue's statistics as plain data (the body of ``GET /api/stats``).
    With ``cap``, each queue's queued jobs are counted exactly up to ``cap`` only."""
    now = now or timezone.now()
    queues, finished = by_queue(now, cap=cap)
    statuses = {
        status: {
            "count": sum(q[status] for q in queues.values()),
            "exact": not any(status in q.get("estimated", ()) for q in queues.values()),
        }
        for status in ACTIVE_STATUSES
    }
    statuses |= {status: _finished_count(status) for status in FINISHED_STATUSES}
    return {
        "generated_at": now,
        "statuses": statuses,
        "queues": dict(sorted(queues.items())),
        "finished": finished,
        "workers": {"alive": Worker.objects.alive(now=now).count()},
    }


def by_queue(
    now: datetime, cap: int | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Return each queue with active or recently finished jobs (its queued and processing
    counts, its lag, its jobs done and failed per window), and the windows' totals. With
    ``cap``, queued jobs are counted exactly up to ``cap`` per queue, then estimated on
    PostgreSQL (the entry's ``"estimated"`` then lists ``"queued"``)."""
    queues = _active_by_queue(now, cap)
    return queues, _finished_recently(now, queues)


def _empty_queue() -> dict[str, Any]:
    return {
        Status.QUEUED.value: 0,
        Status.PROCESSING.value: 0,
        Status.WAITING.value: 0,
        "lag_seconds": None,
        "finished": {window: {s.value: 0 for s in RECENT_STATUSES} for window in WINDOWS},
    }


def _active_by_queue(now: datetime, cap: int | None = None) -> dict[str, dict[str, Any]]:
    """Queued and processing jobs per queue, and each queue's lag.

    Counts come from the partial indexes alone where the database can (queued:
    the claim index, which leads with the queue); the lag is one probe of the due
    index per queue with queued jobs, which stops at that queue's oldest due job.
    A single grouped query over the active rows would visit every queued job's
    table row: 100 ms at 20,000 queued jobs spread over a million-row table.
    """
    queues: dict[str, dict[str, Any]] = {}
    for status in ACTIVE_STATUSES:
        if status == Status.QUEUED and cap is not None:
            _count_queued_capped(queues, cap)
            continue
        rows = Job.objects.filter(status=status).order_by().values_list("queue")
        for queue, n in rows.annotate(n=Count("*")):
            queues.setdefault(queue, _empty_queue())[status] = n
    for queue, entry in queues.items():
        if not entry[Status.QUEUED]:
            continue
        due = Job.objects.claimable(queues=[queue], now=now)
        oldest = due.aggregate(oldest=Min(DUE_AT))["oldest"]
        lag = (now - oldest).total_seconds() if oldest is not None else 0.0
        entry["lag_seconds"] = round(max(lag, 0.0), 3)
    return queues


def _count_queued_capped(queues: dict[str, dict[str, Any]], cap: int) -> None:
    """Each queue's queued jobs, exactly up to ``cap`` (a range of the claim index, which
    leads with the queue), the estimate past it; the queues from a skip scan."""
    for queue in sorted(queued_queues()):
        jobs = Job.objects.filter(status=Status.QUEUED, queue=queue)
        count, estimated = count_or_estimate(jobs, cap)
        entry = queues.setdefault(queue, _empty_queue())
        entry[Status.QUEUED] = count
        if estimated:
            entry.setdefault("estimated", []).append(Status.QUEUED.value)


def queued_queues() -> set[str]:
    """The queues that have queued jobs, read from the claim index (queued rows only).

    On PostgreSQL a skip scan, one index probe per queue (a recursive query: each step
    takes the next queue name after the last); a plain ``DISTINCT`` would read every
    queued row's entry, a cost that grows with the backlog.
    """
    queued = Job.objects.filter(status=Status.QUEUED).order_by()
    connection = connections[queued.db]  # the replica, where the admin reads from one
    if connection.vendor != "postgresql":
        return set(queued.values_list("queue", flat=True).distinct())
    table = connection.ops.quote_name(Job._meta.db_table)
    sql = (
        "WITH RECURSIVE q AS ("  # noqa: S608 (identifiers from the model)
        f"(SELECT queue FROM {table} WHERE status = %s ORDER BY queue LIMIT 1) UNION ALL "
        f"SELECT (SELECT queue FROM {table} WHERE status = %s AND queue > q.queue "
        "ORDER BY queue LIMIT 1) FROM q WHERE q.queue IS NOT NULL"
        ") SELECT queue FROM q WHERE queue IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Status.QUEUED, Status.QUEUED])
        return {queue for (queue,) in cursor.fetchall()}


def _finished_recently(now: datetime, queues: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Count jobs done and failed per window, in total and into each queue's entry."""
    longest = max(WINDOWS.values())
    windows = {
        window: Count("pk", filter=Q(finished_at__gte=now - timedelta(seconds=seconds)))
        for window, seconds in WINDOWS.items()
    }
    rows = (
        Job.objects.filter(
            status__in=RECENT_STATUSES, finished_at__gte=now - timedelta(seconds=longest)
        )
        .values("queue", "status")
        .annotate(**windows)
        .order_by()
    )
    totals = {window: {s.value: 0 for s in RECENT_STATUSES} for window in WINDOWS}
    for row in rows:
        entry = queues.setdefault(row["queue"], _empty_queue())
        for window in WINDOWS:
            entry["finished"][window][row["status"]] = row[window]
            totals[window][row["status"]] += row[window]
    return totals


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


def _finished_count(status: str) -> dict[str, Any]:
    """Count one finished status exactly below the limit, else estimate it."""
    count, estimated = count_or_estimate(Job.objects.filter(status=status), conf.STATS_EXACT_LIMIT)
    return {"count": count, "exact": not estimated}
