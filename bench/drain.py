"""Drain throughput: W worker processes run pre-enqueued no-op jobs.

    python -m bench.drain sqlite|postgres [--workers 1] [--jobs 5000] [--batch 100]
        [--concurrency 1]

Prints one JSON line: the wall-clock rate (worker start to last exit, process
start-up included) and the drain rate from the database's own timestamps
(first ``started_at`` to last ``finished_at``).
"""

import argparse
import time

from bench.common import database_url, drop_database, emit, start_workers, wait_all
from bench.django_env import setup


def run(kind: str, workers: int, jobs: int, batch: int, concurrency: int) -> dict:
    url = database_url(kind, f"drain_{workers}_{concurrency}")
    setup(url)
    from bench.outcome import check_outcome, drain_window, enqueue_noops

    enqueue_noops(jobs)
    args = ["--once", "--batch", str(batch), "--concurrency", str(concurrency)]
    started = time.perf_counter()
    wait_all(start_workers(workers, url, *args))
    elapsed = time.perf_counter() - started
    check_outcome(jobs)
    window, _ = drain_window()
    from django.db import connection

    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "drain",
            "db": kind,
            "workers": workers,
            "concurrency": concurrency,
            "batch": batch,
            "jobs": jobs,
            "wall_s": round(elapsed, 3),
            "wall_jobs_per_s": round(jobs / elapsed),
            "drain_s": round(window, 3),
            "drain_jobs_per_s": round(jobs / window),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=["sqlite", "postgres"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    run(args.db, args.workers, args.jobs, args.batch, args.concurrency)


if __name__ == "__main__":
    main()
