"""Purge 1,000,000 finished jobs on PostgreSQL while workers keep draining new ones.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jobqueue_bench \\
        .venv/bin/python -m bench.purge [--rows 1000000] [--workers 2] [--rate 40]

Fills the database's job table with ``--rows`` old finished jobs (10% failed with
one archived attempt each), starts ``--workers`` ``runworker`` processes, feeds
them ``--rate`` noop jobs a second (well within what they drain), measures their
latency for a few seconds, then runs ``retention.purge()`` and keeps measuring.
Prints JSON: purge time and rate, the slowest single batch, and job throughput
and latency before and during the purge.
Destroys the jobs in that database: point it at a scratch one.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue.settings")
os.environ.setdefault("JOBS_LOG_LEVEL", "WARNING")
os.environ.setdefault("JOBS_PURGE_CRON", "off")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs import lifecycle, retention  # noqa: E402
from jobs.models import Job  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

FILL = """
INSERT INTO jobs_job (id, task, status, queue, priority, attempts, max_attempts, created_at,
                      updated_at, started_at, finished_at, payload, result, progress_message)
SELECT gen_random_uuid(), 'noop', CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'done' END,
       'default', 0, 1, 1, now() - interval '40 days', now() - interval '40 days',
       now() - interval '40 days', now() - interval '40 days',
       jsonb_build_object('n', i), 'null'::jsonb, ''
FROM generate_series(1, %s) AS i
"""
ATTEMPTS = """
INSERT INTO jobs_jobattempt (job_id, number, finished_at, outcome, error)
SELECT id, 1, finished_at, 'failed', 'boom' FROM jobs_job WHERE status = 'failed'
"""


def fill(rows: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")
        cursor.execute(FILL, [rows])
        cursor.execute(ATTEMPTS)
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("ANALYZE jobs_jobattempt")


class Feeder(threading.Thread):
    """Enqueue ``rate`` noop jobs a second until stopped."""

    def __init__(self, rate: int) -> None:
        super().__init__(daemon=True)
        self.rate, self.stop = rate, threading.Event()

    def run(self) -> None:
        tick = 0.1
        while not self.stop.wait(tick):
            lifecycle.enqueue_many([{"task": "noop"}] * max(1, int(self.rate * tick)))
        connection.close()


class DeleteTimer:
    """Record how long each DELETE on the job table takes (one per batch)."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.startswith('DELETE FROM "jobs_job"'):
                self.durations.append(time.perf_counter() - start)


def latency(since: Any, until: Any) -> dict[str, float]:
    """Enqueue-to-finish seconds of the noop jobs created in [since, until)."""
    rows = Job.objects.filter(
        created_at__gte=since, created_at__lt=until, status="done", task="noop"
    ).values_list("created_at", "finished_at")
    waits = sorted((done - created).total_seconds() for created, done in rows)
    if not waits:
        return {"jobs": 0}
    return {
        "jobs": len(waits),
        "jobs_per_s": round(len(waits) / (until - since).total_seconds(), 1),
        "p50_s": round(statistics.median(waits), 3),
        "p99_s": round(waits[int(len(waits) * 0.99) - 1], 3),
        "max_s": round(waits[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database")
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    fill(args.rows)
    fill_s = time.perf_counter() - started

    env = {**os.environ, "JOBS_LOG_LEVEL": "WARNING", "JOBS_PURGE_CRON": "off"}
    command = [sys.executable, "manage.py", "runworker", "--poll-interval", "0.05"]
    workers = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(args.workers)]
    feeder = Feeder(args.rate)
    try:
        feeder.start()
        time.sleep(6)  # workers start up and catch up
        baseline_from = timezone.now()
        time.sleep(10)
        purge_from = timezone.now()
        timer = DeleteTimer()
        started = time.perf_counter()
        with connection.execute_wrapper(timer):
            counts = retention.purge(batch_size=args.batch_size)
        purge_s = time.perf_counter() - started
        purge_until = timezone.now()
        time.sleep(2)  # let the last jobs fed during the purge finish
    finally:
        feeder.stop.set()
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=30)
    deleted = sum(counts.values())
    batches = sorted(timer.durations)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "fill_s": round(fill_s, 1),
                "deleted": counts,
                "purge_s": round(purge_s, 1),
                "rows_per_s": round(deleted / purge_s),
                "batches": len(batches),
                "batch_delete_p50_ms": round(statistics.median(batches) * 1000, 1),
                "batch_delete_max_ms": round(batches[-1] * 1000, 1),
                "workers": args.workers,
                "feed_rate_per_s": args.rate,
                "latency_before_purge": latency(baseline_from, purge_from),
                "latency_during_purge": latency(purge_from, purge_until),
                "left_unfinished": Job.objects.filter(status__in=["queued", "processing"]).count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
