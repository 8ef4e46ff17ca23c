"""Purge 1,000,000 finished jobs on PostgreSQL while workers keep draining new ones.

    python -m bench.purge [--rows 1000000] [--keep 0] [--workers 2] [--rate 40]
                          [--database-url URL | --cluster-port PORT]

Fills a fresh benchmark database (``BENCH_DB_PREFIX`` + ``purge``, dropped after; or
the one at ``--database-url``, whose jobs it DESTROYS; or one in a private cluster
started on ``--cluster-port`` with PostgreSQL's stock settings, autovacuum on) with
``--rows`` finished jobs (10% failed with one archived attempt each), all old but the
newest ``--keep``, starts ``--workers`` ``runworker``
processes, feeds them ``--rate`` noop jobs a second (well within what they drain),
measures their latency for a few seconds, then runs ``retention.purge()`` and keeps
measuring. Prints JSON (purge time and rate, the slowest single batch, how long a batch
holds its rows locked and whether anyone waited on a lock, job throughput and latency
before and during the purge, the table's size and dead rows) and writes docs/purge.md
(``--output`` elsewhere).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import report
from bench.common import (
    ROOT,
    env_for,
    load_bare,
    percentile,
    private_postgres,
    scratch_postgres,
)
from bench.django_env import setup

FILL = """
INSERT INTO jobs_job (id, task, status, queue, priority, attempts, max_attempts, created_at,
                      updated_at, started_at, finished_at, payload, result, progress_message,
                      has_dependents)
SELECT gen_random_uuid(), 'noop', CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'done' END,
       'default', 0, 1, 1, at, at, at, at, jsonb_build_object('n', i), 'null'::jsonb, '', false
FROM generate_series(1, %s) AS i,
     LATERAL (SELECT CASE WHEN i <= %s THEN now() - interval '40 days'
                          ELSE now() - interval '1 day' END
                     + i * interval '1 millisecond' AS at) AS finished
"""
ATTEMPTS = """
INSERT INTO jobs_jobattempt (job_id, number, finished_at, outcome, error)
SELECT id, 1, finished_at, 'failed', 'boom' FROM jobs_job WHERE status = 'failed'
"""


def fill(rows: int, old: int) -> None:
    """Insert ``rows`` finished jobs, one a millisecond: the first ``old`` finished 40 days
    ago (past every default retention age), the rest a day ago (kept)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")
        load_bare(cursor, FILL, [rows, old])
        cursor.execute(ATTEMPTS)
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("ANALYZE jobs_jobattempt")


class Feeder(threading.Thread):
    """Enqueue ``rate`` noop jobs a second until stopped."""

    def __init__(self, rate: int) -> None:
        super().__init__(daemon=True)
        self.rate, self.stop = rate, threading.Event()

    def run(self) -> None:
        from django.db import connection

        from jobs import lifecycle

        tick = 0.1
        while not self.stop.wait(tick):
            lifecycle.enqueue_many([{"task": "noop"}] * max(1, int(self.rate * tick)))
        connection.close()


class BatchTimer:
    """Time each batch from its locking ``SELECT ... FOR UPDATE`` to the end of its
    ``DELETE`` of jobs (how long its rows stay locked, the commit aside), the ``DELETE``
    alone, and count the jobs each deletes."""

    def __init__(self) -> None:
        self.deletes: list[float] = []
        self.held: list[float] = []
        self.rows: list[int] = []
        self.locked_at = 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        if sql.endswith("FOR UPDATE SKIP LOCKED"):
            self.locked_at = start
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.startswith('DELETE FROM "jobs_job"'):
                end = time.perf_counter()
                self.deletes.append(end - start)
                self.held.append(end - self.locked_at)
                self.rows.append(context["cursor"].rowcount)


LOCKS = """
WITH mine AS (SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend'
              AND pid <> pg_backend_pid())
SELECT (SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM mine)),
       (SELECT array_agg(DISTINCT mode) FROM pg_locks
        WHERE pid = %(purge)s AND relation = 'jobs_job'::regclass),
       (SELECT array_agg(wait_event_type || ': ' || wait_event) FROM mine
        WHERE pid <> %(purge)s AND state = 'active' AND wait_event_type IS NOT NULL)
"""


class LockSampler(threading.Thread):
    """Every 50 ms until stopped, look at the database's client backends from a connection
    of its own: locks not granted (anyone waiting for a lock), the purge's locks on the job
    table, and what the other backends (the workers, the feed) are waiting on, if anything.
    Row locks are not in ``pg_locks`` (they live in the rows) unless someone waits on one."""

    def __init__(self, url: str, purge_pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.stop = url, purge_pid, threading.Event()
        self.samples, self.most_waiting = 0, 0
        self.modes: set[str] = set()
        self.waits: Counter[str] = Counter()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.05):
                waiting, modes, waits = conn.execute(LOCKS, {"purge": self.pid}).fetchone()
                self.samples += 1
                self.most_waiting = max(self.most_waiting, waiting)
                self.modes.update(modes or [])
                self.waits.update(waits or [])

    def result(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "most_locks_waited_for": self.most_waiting,
            "purge_table_locks": sorted(self.modes),
            "others_waiting_on": dict(self.waits.most_common()),
        }


def table_state() -> dict[str, Any]:
    """The job table's size (heap, indexes, in MB) and live and dead rows, from the
    statistics collector (after a moment for it to catch up)."""
    from django.db import connection

    time.sleep(1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pg_table_size('jobs_job'), pg_indexes_size('jobs_job'), n_live_tup, "
            "n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs_job'"
        )
        heap, indexes, live, dead, autovacuums = cursor.fetchone()
    mb = 1024 * 1024
    return {
        "heap_mb": round(heap / mb),
        "indexes_mb": round(indexes / mb),
        "live": live,
        "dead": dead,
        "autovacuums": autovacuums,
    }


def vacuum() -> float:
    """``VACUUM ANALYZE`` the job table (what autovacuum would do); return its seconds."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE jobs_job")
    return round(time.perf_counter() - started, 1)


def latency(since: Any, until: Any) -> dict[str, float]:
    """Enqueue-to-finish times (ms) of the noop jobs created in [since, until)."""
    from jobs.models import Job

    rows = Job.objects.filter(
        created_at__gte=since, created_at__lt=until, status="done", task="noop"
    ).values_list("created_at", "finished_at")
    waits = sorted((done - created).total_seconds() * 1000 for created, done in rows)
    if not waits:
        return {"jobs": 0}
    return {
        "jobs": len(waits),
        "seconds": round((until - since).total_seconds(), 1),
        "jobs_per_s": round(len(waits) / (until - since).total_seconds(), 1),
        "p50_ms": round(statistics.median(waits)),
        "p99_ms": round(percentile(waits, 0.99)),
        "max_ms": round(waits[-1]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fill, start the workers and the feed, purge; return the measurements."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from jobs import retention
    from jobs.models import Job

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    started = time.perf_counter()
    fill(args.rows, args.rows - args.keep)
    fill_s = time.perf_counter() - started
    vacuum()  # a table at rest: its visibility map set, as autovacuum leaves an old table
    filled = dict(Job.objects.order_by().values_list("status").annotate(n=Count("*")))

    command = [sys.executable, "manage.py", "runworker", "--poll-interval", "0.05"]
    env = env_for(os.environ["DATABASE_URL"])
    workers = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(args.workers)]
    feeder = Feeder(args.rate)
    try:
        feeder.start()
        time.sleep(6)  # workers start up and catch up
        baseline_from = timezone.now()
        time.sleep(10)
        purge_from = timezone.now()
        before = table_state()
        timer, locks = BatchTimer(), LockSampler(os.environ["DATABASE_URL"], pid)
        locks.start()
        started = time.perf_counter()
        with connection.execute_wrapper(timer):
            counts = retention.purge(batch_size=args.batch_size)
        purge_s = time.perf_counter() - started
        purge_until = timezone.now()
        locks.stop.set()
        locks.join()
        time.sleep(2)  # let the last jobs fed during the purge finish
    finally:
        feeder.stop.set()
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=30)
    after = table_state()
    vacuum_s = vacuum()
    vacuumed = table_state()
    deleted = sum(counts.values())
    batches = sorted(timer.deletes)
    return {
        "rows": args.rows,
        "kept": args.keep,
        "autovacuum": autovacuum,
        "filled": filled,
        "fill_s": round(fill_s, 1),
        "deleted": counts,
        "purge_s": round(purge_s, 1),
        "jobs_per_s": round(deleted / purge_s),
        "batch_size": args.batch_size,
        "batches": len(batches),
        "batch_delete_p50_ms": round(statistics.median(batches) * 1000, 1),
        "batch_delete_max_ms": round(batches[-1] * 1000, 1),
        "most_jobs_locked_at_once": max(timer.rows),
        "locks_held_p50_ms": round(statistics.median(timer.held) * 1000, 1),
        "locks_held_max_ms": round(max(timer.held) * 1000, 1),
        "locks": locks.result(),
        "workers": args.workers,
        "feed_rate_per_s": args.rate,
        "latency_before_purge": latency(baseline_from, purge_from),
        "latency_during_purge": latency(purge_from, purge_until),
        "left_unfinished": Job.objects.filter(status__in=["queued", "processing"]).count(),
        "table": {"before the purge": before, "after it": after, "after VACUUM": vacuumed},
        "vacuum_s": vacuum_s,
    }


def markdown(result: dict[str, Any], machine: dict[str, Any], seconds: float, db: str) -> str:
    filled = ", ".join(f"{status} {n:,}" for status, n in sorted(result["filled"].items()))
    deleted = ", ".join(f"{status} {n:,}" for status, n in sorted(result["deleted"].items()))
    purge = [
        ["finished jobs before the purge", f"{result['rows']:,} ({filled})"],
        ["of which recent (finished a day ago: kept)", f"{result['kept']:,}"],
        ["filled in", f"{result['fill_s']} s"],
        ["deleted", deleted],
        ["purge took", f"{result['purge_s']} s"],
        ["jobs deleted per second", f"{result['jobs_per_s']:,}"],
        ["batches", f"{result['batches']:,} of up to {result['batch_size']:,} jobs"],
        ["one batch's DELETE, median", f"{result['batch_delete_p50_ms']} ms"],
        ["one batch's DELETE, slowest", f"{result['batch_delete_max_ms']} ms"],
        ["jobs left queued or processing at the end", result["left_unfinished"]],
    ]
    locks = result["locks"]
    waits = ", ".join(f"{event} ({n:,})" for event, n in locks["others_waiting_on"].items())
    footprint = [
        ["most jobs locked by one batch", f"{result['most_jobs_locked_at_once']:,}"],
        ["one batch's rows locked for, median", f"{result['locks_held_p50_ms']} ms"],
        ["one batch's rows locked for, longest", f"{result['locks_held_max_ms']} ms"],
        ["samples of `pg_locks` / `pg_stat_activity` (every 50 ms)", f"{locks['samples']:,}"],
        ["the purge's locks on the job table", ", ".join(locks["purge_table_locks"])],
        ["most lock requests waiting at once (any backend)", locks["most_locks_waited_for"]],
        ["other backends seen waiting, on what (samples)", waits or "none"],
    ]
    windows = [("before the purge", "latency_before_purge"), ("during it", "latency_during_purge")]
    rows = [
        [
            label,
            f"{w['jobs']:,}",
            *(w.get(k, "") for k in ("seconds", "jobs_per_s", "p50_ms", "p99_ms", "max_ms")),
        ]
        for label, key in windows
        for w in [result[key]]
    ]
    return report.standalone(
        "Purging finished jobs under load",
        machine,
        seconds,
        db,
        f"## The purge (`retention.purge(batch_size={result['batch_size']})`)\n\n"
        "Old finished jobs (10% failed, each failed one with an attempt in its history), "
        "purged in batches, each its own transaction; the time of each batch's `DELETE` "
        "of jobs.\n\n" + report.table("|", purge),
        "## Lock footprint\n\n"
        "A batch locks its jobs with `SELECT ... FOR UPDATE SKIP LOCKED` and deletes them "
        "in the same transaction; its rows stay locked from that `SELECT` to the commit (timed "
        "here to the end of the `DELETE`). Row locks do not show in `pg_locks` unless someone "
        "waits for one, so a sampler on a connection of its own counts lock requests not "
        "granted and the wait events of the database's other client backends (the workers "
        "and the feed) while the purge runs. `RowShareLock` and `RowExclusiveLock` are the "
        "table locks every claim and update takes too: they never conflict.\n\n"
        + report.table("|", footprint),
        f"## The workers meanwhile ({result['workers']} `runworker`, fed "
        f"{result['feed_rate_per_s']} noop jobs a second)\n\n"
        "Enqueue-to-done time of the noop jobs created in each window (database clock).\n\n"
        + report.table("window | jobs done | seconds | jobs/s | p50 ms | p99 ms | max ms", rows),
        "## The table afterwards\n\n"
        "The job table's heap and index sizes (`pg_table_size`, `pg_indexes_size`) and its "
        "live and dead rows (`pg_stat_user_tables`): before the purge, right after it, and "
        f"after a `VACUUM ANALYZE` (what autovacuum does), which took {result['vacuum_s']} s. "
        f"The server ran with `autovacuum = {result['autovacuum']}` (autovacuum runs during "
        "the purge, if any, are counted). "
        "A plain vacuum keeps the files' size and makes the dead rows' space reusable by "
        "new jobs; only `VACUUM FULL` (an exclusive lock) gives it back to the system.\n\n"
        + report.table(
            "| heap MB | indexes MB | live rows | dead rows | autovacuum runs so far",
            [
                [
                    when,
                    f"{t['heap_mb']:,}",
                    f"{t['indexes_mb']:,}",
                    f"{t['live']:,}",
                    f"{t['dead']:,}",
                    t["autovacuums"],
                ]
                for when, t in result["table"].items()
            ],
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--keep", type=int, default=0, help="of --rows, how many are recent (not purged)"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--database-url", help="a scratch PostgreSQL database (default: a fresh one)"
    )
    target.add_argument(
        "--cluster-port",
        type=int,
        help="run in a private PostgreSQL cluster with stock settings on this port",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "purge.md")
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a PostgreSQL database")
    if not 0 <= args.keep < args.rows:
        parser.error("--keep must be at least 0 and less than --rows")
    machine = report.machine()
    started = time.monotonic()
    with ExitStack() as stack:
        if args.cluster_port:
            cluster = stack.enter_context(private_postgres(args.cluster_port))
            url = cluster.create_database("purge")
        else:
            url = stack.enter_context(scratch_postgres(args.database_url, "purge"))
        setup(url)
        from django.db import connections

        stack.callback(connections.close_all)
        result = run(args)
    print(json.dumps(result, indent=2))
    where = " (a private cluster, stock settings)" if args.cluster_port else ""
    db = f"PostgreSQL, `{url.rsplit('/', 1)[1]}`{where}"
    report.write(args.output, markdown(result, machine, time.monotonic() - started, db))


if __name__ == "__main__":
    main()
