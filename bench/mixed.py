"""A mixed workload: 90% no-op jobs, 10% jobs of 200 ms, on ``runworker``'s defaults.

    python -m bench.mixed sqlite|postgres [--workers 2] [--rate 60] [--seconds 5]
        [--backlog 500] [--variant default|batch-1|no-hand-back]

Starts ``--workers`` ``runworker`` processes (one executor each) and runs two
phases on one fresh database, each checked for its outcome:

- *arrivals*: jobs enqueued one at a time at ``--rate`` a second for
  ``--seconds`` (each long with probability 0.1, seeded), about 60% of what two
  executors can run. It reports the wait of the short jobs (``started_at -
  created_at``, median and p99): a short job that waits behind a long one in an
  executor's hand waits 200 ms or more;
- *backlog*: ``--backlog`` jobs of the same mix queued at once, drained: the
  throughput (jobs over the database-clock window, first ``started_at`` to last
  ``finished_at``; the long jobs alone need ``backlog x 0.1 x 0.2 s / workers``).

Variants: ``default`` (no flags), ``batch-1`` (``--batch 1``: one job per claim),
``no-hand-back`` (``JOBS_HAND_BACK_AFTER=3600``: batches without handing back
the jobs waiting behind a long one). Prints one JSON line.
"""

import argparse
import os
import random
import statistics
import time

from bench.common import (
    DATABASES,
    database_url,
    drop_database,
    emit,
    percentile,
    start_workers,
    stop_workers,
    wait_for,
)
from bench.django_env import setup

LONG = 0.2  # seconds
VARIANTS = {
    "default": ([], {}),
    "batch-1": (["--batch", "1"], {}),
    "no-hand-back": ([], {"JOBS_HAND_BACK_AFTER": "3600"}),
}


def _job(rng: random.Random, queue: str) -> dict:
    if rng.random() < 0.1:
        return {"task": "bench.sleep", "payload": LONG, "queue": queue}
    return {"task": "noop", "queue": queue}


def _finished(queue: str, count: int) -> bool:
    from jobs.models import Job

    return Job.objects.filter(queue=queue, status="done").count() == count


def arrivals(rng: random.Random, rate: float, seconds: float) -> dict:
    """Enqueue at ``rate`` a second for ``seconds``; return the short jobs' waits (ms)."""
    from bench.outcome import check_outcome
    from jobs import lifecycle
    from jobs.models import Job

    count = round(rate * seconds)
    started = time.perf_counter()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.perf_counter()))
        lifecycle.enqueue(**_job(rng, "arrivals"))
    wait_for(lambda: _finished("arrivals", count), timeout=120)
    check_outcome(count, queue="arrivals")
    waits = {"noop": [], "bench.sleep": []}
    for task, created, began in Job.objects.filter(queue="arrivals").values_list(
        "task", "created_at", "started_at"
    ):
        waits[task].append((began - created).total_seconds() * 1000)
    short, long = waits["noop"], waits["bench.sleep"]
    return {
        "arrival_jobs": count,
        "arrival_long_jobs": len(long),
        "short_wait_median_ms": round(statistics.median(short), 1),
        "short_wait_p99_ms": round(percentile(short, 0.99), 1),
        "short_wait_max_ms": round(max(short), 1),
        "long_wait_p99_ms": round(percentile(long, 0.99), 1) if long else None,
    }


def backlog(rng: random.Random, count: int, workers: int) -> dict:
    """Queue ``count`` mixed jobs at once and time their drain."""
    from bench.outcome import check_outcome, drain_window
    from jobs import lifecycle

    jobs = [_job(rng, "backlog") for _ in range(count)]
    long = sum(1 for job in jobs if job["task"] == "bench.sleep")
    lifecycle.enqueue_many(jobs)
    wait_for(lambda: _finished("backlog", count), timeout=300)
    check_outcome(count, queue="backlog")
    window, _ = drain_window(queue="backlog")
    return {
        "backlog_jobs": count,
        "backlog_long_jobs": long,
        "backlog_s": round(window, 3),
        "backlog_jobs_per_s": round(count / window),
        "backlog_floor_s": round(long * LONG / workers, 3),  # the long jobs' own time
    }


def run(kind: str, workers: int, rate: float, seconds: float, count: int, variant: str) -> dict:
    url = database_url(kind, f"mixed_{variant.replace('-', '_')}")
    os.environ["JOBS_TASK_MODULES"] = "bench.tasks"  # here and in the workers
    setup(url)
    from jobs.models import Worker

    flags, extra = VARIANTS[variant]
    procs = start_workers(workers, url, *flags, **extra)
    rng = random.Random(7)
    try:
        wait_for(lambda: Worker.objects.count() == workers, timeout=60)
        time.sleep(1.0)  # settle: executor children up
        waits = arrivals(rng, rate, seconds)
        drained = backlog(rng, count, workers)
    finally:
        stop_workers(procs)
    from django.db import connection

    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "mixed",
            "db": kind,
            "variant": variant,
            "workers": workers,
            "rate": rate,
            **waits,
            **drained,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--backlog", type=int, default=500)
    parser.add_argument("--variant", choices=list(VARIANTS), default="default")
    args = parser.parse_args()
    run(args.db, args.workers, args.rate, args.seconds, args.backlog, args.variant)


if __name__ == "__main__":
    main()
