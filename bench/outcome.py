"""Outcome checks and DB-timestamp rates, run after Django is set up (``bench.django_env``)."""

from typing import Any


def enqueue_noops(count: int, chunk: int = 5000) -> None:
    """Queue ``count`` noop jobs through the Python bulk API."""
    from jobs import lifecycle

    for start in range(0, count, chunk):
        lifecycle.enqueue_many([{"task": "noop"} for _ in range(min(chunk, count - start))])


def check_outcome(count: int, **filters: Any) -> None:
    """Every job done exactly once: ``count`` rows done, one attempt each, nothing else left.

    ``filters`` narrow the rows checked (e.g. the jobs of this run, not preloaded ones).
    """
    from django.db.models import Count

    from jobs.models import Job

    jobs = Job.objects.filter(**filters)
    by_status = dict(jobs.values_list("status").annotate(n=Count("pk")).order_by())
    attempts = dict(jobs.values_list("attempts").annotate(n=Count("pk")).order_by())
    if by_status != {"done": count} or attempts != {1: count}:
        raise SystemExit(f"outcome check failed: statuses={by_status} attempts={attempts}")


def drain_window(**filters: Any) -> tuple[float, int]:
    """Seconds from the first start (started_at) to the last finish, and the job count."""
    from django.db.models import Count, Max, Min

    from jobs.models import Job

    span = Job.objects.filter(**filters).aggregate(
        first=Min("started_at"), last=Max("finished_at"), n=Count("pk")
    )
    return (span["last"] - span["first"]).total_seconds(), span["n"]
