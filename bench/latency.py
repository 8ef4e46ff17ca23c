"""Pickup latency: one idle worker, one job enqueued at a time.

    python -m bench.latency sqlite|postgres [--samples 50]

Starts one ``runworker`` (default poll interval: ``JOBS_POLL_INTERVAL`` is not
overridden), waits until it has registered and settled, then 50 times: waits a
random fraction of the poll interval (so samples do not line up with the
worker's poll), enqueues one noop job through the Python API (autocommit) and
polls until it is done. The latency of a sample is ``finished_at -
created_at``, both stamped by the application's clock on this machine.
"""

import argparse
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


def sample() -> float:
    """Enqueue one noop job, wait until it is done; return enqueue->finish in seconds."""
    from jobs import lifecycle
    from jobs.models import Job

    job, _ = lifecycle.enqueue(task="noop")

    def finished() -> Job | None:
        return (
            Job.objects.filter(pk=job.pk, status="done").only("created_at", "finished_at").first()
        )

    done = wait_for(finished, timeout=30, interval=0.001)
    return (done.finished_at - done.created_at).total_seconds()


def run(kind: str, samples: int) -> dict:
    url = database_url(kind, "latency")
    setup(url)
    from django.db import connection

    from bench.outcome import check_outcome
    from jobs.conf import conf
    from jobs.models import Worker

    workers = start_workers(1, url)  # runworker's defaults
    try:
        wait_for(Worker.objects.exists, timeout=60)
        time.sleep(1.0)  # settle: executor children up, first idle poll done
        waits = []
        for _ in range(samples):
            time.sleep(random.uniform(0, min(conf.POLL_INTERVAL, 1.0)))
            waits.append(sample())
    finally:
        stop_workers(workers)
    check_outcome(samples)
    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "latency",
            "db": kind,
            "samples": samples,
            "poll_interval_s": conf.POLL_INTERVAL,
            "median_ms": round(statistics.median(waits) * 1000, 1),
            "p95_ms": round(percentile(waits, 0.95) * 1000, 1),
            "min_ms": round(min(waits) * 1000, 1),
            "max_ms": round(max(waits) * 1000, 1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    run(args.db, args.samples)


if __name__ == "__main__":
    main()
