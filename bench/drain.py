"""Drain throughput: W worker processes run pre-enqueued no-op jobs.

    python -m bench.drain sqlite|postgres [--workers 1] [--jobs 5000] [--batch N]
        [--concurrency 1] [--repeat 3]

Queues ``--jobs`` noop jobs, runs ``--workers`` ``runworker --once`` processes
(with ``--batch N`` only if given: runworker's default otherwise; logging at
``--log-level``, INFO as by default, to a file) until they exit, checks the outcome; ``--repeat``
times on one fresh database (each round's jobs told apart by their creation
time). Prints one JSON line with
the median round: the wall-clock rate (worker start to last exit, process
start-up included) and the drain rate from the database's own timestamps (first
``started_at`` to last ``finished_at``), plus the best drain rate. A 5,000-job
drain lasts about a second, so a single round on a shared machine is noisy.
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import DATABASES, database_url, drop_database, emit, start_workers, wait_all
from bench.django_env import setup


def round_(
    url: str, workers: int, jobs: int, args: list[str], log_level: str
) -> tuple[float, float]:
    """Queue and drain ``jobs``; return (wall seconds, database seconds)."""
    from django.utils import timezone

    from bench.outcome import check_outcome, drain_window, enqueue_noops

    mark = timezone.now()
    enqueue_noops(jobs)
    started = time.perf_counter()
    # Logs written to a file, as a service's are (INFO: a line per claim and per outcome).
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        wait_all(start_workers(workers, url, *args, log=Path(log.name), JOBS_LOG_LEVEL=log_level))
    elapsed = time.perf_counter() - started
    check_outcome(jobs, created_at__gte=mark)
    window, _ = drain_window(created_at__gte=mark)
    return elapsed, window


def run(
    kind: str,
    workers: int,
    jobs: int,
    batch: int | None,
    concurrency: int,
    repeat: int,
    log_level: str = "INFO",
) -> dict:
    url = database_url(kind, f"drain_{workers}_{concurrency}")
    setup(url)
    args = ["--once", "--concurrency", str(concurrency)]
    args += ["--batch", str(batch)] if batch else []
    rounds = sorted(
        (round_(url, workers, jobs, args, log_level) for _ in range(repeat)), key=lambda r: r[1]
    )
    wall, window = rounds[len(rounds) // 2]  # the median by drain time
    from django.db import connection

    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "drain",
            "db": kind,
            "workers": workers,
            "concurrency": concurrency,
            "batch": batch or "default",
            "log_level": log_level,
            "jobs": jobs,
            "rounds": repeat,
            "wall_s": round(wall, 3),
            "wall_jobs_per_s": round(jobs / wall),
            "drain_s": round(window, 3),
            "drain_jobs_per_s": round(jobs / window),
            "best_drain_jobs_per_s": round(jobs / rounds[0][1]),
            "all_drain_jobs_per_s": [round(jobs / r[1]) for r in rounds],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, help="runworker --batch (default: none given)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--log-level", default="INFO", help="JOBS_LOG_LEVEL (default: INFO)")
    args = parser.parse_args()
    run(args.db, args.workers, args.jobs, args.batch, args.concurrency, args.repeat, args.log_level)


if __name__ == "__main__":
    main()
