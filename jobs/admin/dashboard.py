"""The queue dashboard: what an operator checks first, from cheap queries only.

Status counts, queue depths and the queue lag are those of ``GET /api/stats``
(``jobs.observability.stats``: exact up to ``JOBS_STATS_EXACT_LIMIT`` jobs per finished status,
the planner's estimate beyond on PostgreSQL), except that each queue's queued jobs are
counted exactly up to ``stats.QUEUED_EXACT_LIMIT`` only, then estimated. The per-minute
throughput reads only the last hour through the ``finished_at`` index.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone

from jobs.admin import chart
from jobs.models import ACTIVE_STATUSES, DUE_AT, Job, Status, Worker
from jobs.observability import stats

MINUTES = 60


@dataclass
class StatusCount:
    status: str
    count: int
    estimated: bool


@dataclass
class Throughput:
    """Jobs finished per minute over the last hour, oldest minute first."""

    done: list[int] = field(default_factory=lambda: [0] * MINUTES)
    failed: list[int] = field(default_factory=lambda: [0] * MINUTES)

    @property
    def failure_rate(self) -> float | None:
        finished = sum(self.done) + sum(self.failed)
        return sum(self.failed) / finished if finished else None


def throughput(now: datetime) -> Throughput:
    start = chart.minutes(now, MINUTES)[0]
    rows = (
        Job.objects.filter(finished_at__gte=start, status__in=[Status.DONE, Status.FAILED])
        .order_by()
        .annotate(minute=TruncMinute("finished_at"))
        .values_list("minute", "status")
        .annotate(n=Count("pk"))
    )
    series = Throughput()
    for minute, status, n in rows:
        index = int((minute - start).total_seconds() // 60)
        if 0 <= index < MINUTES:
            getattr(series, status)[index] += n
    return series


def live_workers(now: datetime) -> list[dict[str, Any]]:
    workers = list(Worker.objects.alive(now=now).order_by("id"))
    running: dict[str, list[Any]] = {}
    held = Job.objects.filter(status=Status.PROCESSING, worker_id__in=[w.id for w in workers])
    for job_id, worker_id, task in held.values_list("pk", "worker_id", "task"):
        running.setdefault(worker_id, []).append((job_id, task))
    return [
        {"worker": w, "beat": human(now - w.last_heartbeat_at), "jobs": running.get(w.id, [])}
        for w in workers
    ]


def human(delta: timedelta | None) -> str | None:
    """Say a duration the way an operator reads it: seconds, minutes, hours or days."""
    if delta is None:
        return None
    seconds = max(delta.total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def stamp(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """Say a time as the console shows every time: with seconds and the zone (the
    site's, or ``zone``)."""
    if moment is None:
        return "-"
    return f"{timezone.localtime(moment, zone):%Y-%m-%d %H:%M:%S %Z}"


def context() -> dict[str, Any]:
    """Everything the dashboard template shows."""
    now = timezone.now()
    # The counts and lags of GET /api/stats, each queue's queued jobs counted up to a cap.
    snapshot = stats.snapshot(now=now, cap=stats.QUEUED_EXACT_LIMIT)
    statuses, queues = snapshot["statuses"], snapshot["queues"]
    lags = [entry["lag_seconds"] for entry in queues.values() if entry["lag_seconds"]]
    series = throughput(now)
    delayed = delayed_by_queue(now)
    return {
        "now": now,
        "status_counts": [
            StatusCount(s.value, statuses[s]["count"], not statuses[s]["exact"]) for s in Status
        ],
        "queue_depths": [
            {
                "queue": name,
                **{s.value: entry[s] for s in ACTIVE_STATUSES},
                "delayed": delayed.get(name, 0),
                "due": max(entry[Status.QUEUED] - delayed.get(name, 0), 0),
                "estimated": Status.QUEUED.value in entry.get("estimated", ()),
            }
            for name, entry in queues.items()
            if any(entry[s] for s in ACTIVE_STATUSES)
        ],
        "delayed": sum(delayed.values()),
        "throughput": series,
        "finished_last_hour": sum(series.done) + sum(series.failed),
        "failed_last_hour": sum(series.failed),
        "failure_rate": series.failure_rate,
        "oldest_queued_age": human(timedelta(seconds=max(lags))) if lags else None,
        "live_workers": live_workers(now),
        "dead_workers": Worker.objects.dead(now=now).count(),
        "chart": chart.svg(series.done, series.failed),
        "chart_scale": chart.scale(
            [d + f for d, f in zip(series.done, series.failed, strict=True)]
        ),
        "chart_rows": chart.rows(series.done, series.failed, now),
        "chart_unit": chart.UNIT,
    }


def delayed_by_queue(now: datetime) -> dict[str, int]:
    """Queued jobs not due yet (run-after in the future), per queue: a range of the
    partial index on queued jobs' due time. They are waiting on purpose, not lagging."""
    later = Job.objects.filter(status=Status.QUEUED).alias(due_at=DUE_AT).filter(due_at__gt=now)
    return dict(later.order_by().values_list("queue").annotate(n=Count("pk")))
