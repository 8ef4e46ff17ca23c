"""Drain throughput: N worker processes run pre-enqueued no-op jobs; jobs per second."""

import sys
import time

from bench.common import database_url, emit, start_workers, wait_all
from bench.django_env import setup


def enqueue_noops(count: int) -> None:
    from jobs import lifecycle

    for start in range(0, count, 5000):
        lifecycle.enqueue_many([{"task": "noop"} for _ in range(min(5000, count - start))])


def check_outcome(count: int) -> dict[str, int]:
    """Every job done exactly once: all rows done, one attempt each, nothing processing."""
    from django.db.models import Count

    from jobs.models import Job

    by_status = dict(Job.objects.values_list("status").annotate(n=Count("pk")))
    attempts = dict(Job.objects.values_list("attempts").annotate(n=Count("pk")))
    ok = by_status == {"done": count} and attempts == {1: count}
    if not ok:
        raise SystemExit(f"drain check failed: statuses={by_status} attempts={attempts}")
    return by_status


def run(kind: str, workers: int, count: int = 5000, batch: int = 100, **extra: str) -> dict:
    url = database_url(kind, f"drain_{workers}")
    setup(url)
    enqueue_noops(count)
    started = time.perf_counter()
    procs = start_workers(workers, url, "--once", "--batch", str(batch), **extra)
    wait_all(procs)
    elapsed = time.perf_counter() - started
    check_outcome(count)
    return emit(
        {
            "bench": "drain",
            "db": kind,
            "workers": workers,
            "jobs": count,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(count / elapsed),
        }
    )


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 5000)
