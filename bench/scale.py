"""Claim scale: drain rate with 1,000,000 finished jobs in the table vs an empty table.

    python -m bench.scale sqlite|postgres|mysql [--rows 1000000] [--jobs 5000]

Two fresh databases: one gets ``--rows`` done jobs with one ``INSERT ... SELECT``
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite, the sequence engine
on MariaDB; in chunks of 100,000 there) and is settled as a long-lived one is
(analyzed, its pages written out), the other stays empty. Then ``--rounds`` times, alternating
(so the machine's load hits both alike), ``--jobs`` noop jobs are drained by one
worker (``--once``, runworker's defaults) on each. Prints one JSON line with the
best drain rate of each (database timestamps) and their ratio.
"""

import argparse
import time

from bench.common import DATABASES, database_url, drop_database, emit, start_workers, wait_all
from bench.django_env import setup

COLUMNS = """id, task, payload, status, queue, priority, run_after, attempts, max_attempts,
    timeout, idempotency_key, result, error, traceback, created_at, updated_at, started_at,
    finished_at, worker_id, lease_expires_at, progress, progress_message, has_dependents"""

PG_LOAD = f"""
INSERT INTO jobs_job ({COLUMNS})
SELECT gen_random_uuid(), 'noop', NULL, 'done', 'default', 0, NULL, 1, 3,
       NULL, NULL, 'null'::jsonb, NULL, NULL, t, t, t, t + interval '1 millisecond',
       'preload', NULL, NULL, '', false
FROM generate_series(1, %s) AS i
CROSS JOIN LATERAL (SELECT now() - interval '2 days' + i * interval '100 microseconds' AS t) c
"""

SQLITE_LOAD = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)
INSERT INTO jobs_job ({COLUMNS})
SELECT lower(hex(randomblob(16))), 'noop', NULL, 'done', 'default', 0, NULL, 1, 3,
       NULL, NULL, 'null', NULL, NULL, t, t, t, t, 'preload', NULL, NULL, '', 0
FROM (SELECT i, strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-2 days',
                         '+' || (i / 10000.0) || ' seconds') AS t FROM n)
"""

MYSQL_LOAD = f"""
INSERT INTO jobs_job ({COLUMNS})
SELECT UUID(), 'noop', NULL, 'done', 'default', 0, NULL, 1, 3,
       NULL, NULL, 'null', NULL, NULL, t, t, t, t + INTERVAL 1000 MICROSECOND,
       'preload', NULL, NULL, '', 0
FROM (SELECT UTC_TIMESTAMP(6) - INTERVAL 2 DAY + INTERVAL (%s + seq) * 100 MICROSECOND AS t
      FROM seq_1_to_%s) AS c
"""
MYSQL_CHUNK = 100_000


def use(url: str) -> None:
    """Point this process's default connection at the database ``url``."""
    import dj_database_url
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = dj_database_url.parse(url)["NAME"]


def drain(url: str, jobs: int) -> float:
    """Queue ``jobs`` noops, drain them with one worker; return the DB-timestamp rate."""
    from django.utils import timezone

    use(url)
    from bench.outcome import check_outcome, drain_window, enqueue_noops

    mark = timezone.now()
    enqueue_noops(jobs)
    wait_all(start_workers(1, url, "--once"))
    check_outcome(jobs, created_at__gte=mark)
    window, _ = drain_window(created_at__gte=mark)
    return jobs / window


def load(rows: int) -> float:
    """Insert ``rows`` done jobs in one statement and analyze; return the seconds it took."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            # One transaction per chunk: a million-row one would outgrow the undo log.
            for start in range(0, rows, MYSQL_CHUNK):
                # The sequence table's name is the count: an integer, formatted in.
                n = min(MYSQL_CHUNK, rows - start)
                cursor.execute(MYSQL_LOAD.replace("seq_1_to_%s", f"seq_1_to_{n}"), [start])
            cursor.execute("ANALYZE TABLE jobs_job")
            cursor.fetchall()
            # Settle it as a long-lived table is (as CHECKPOINT does on PostgreSQL): the
            # table's dirty pages written out, so InnoDB's page cleaner does not work
            # through a fresh million rows during the drain it measures.
            cursor.execute("FLUSH TABLES jobs_job FOR EXPORT")
            cursor.execute("UNLOCK TABLES")
            return time.perf_counter() - started
        sql = PG_LOAD if connection.vendor == "postgresql" else SQLITE_LOAD
        cursor.execute(sql, [rows])
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            # As a long-lived file is: the million rows copied from the write-ahead log
            # into the database and the log emptied, not left to the drain's commits.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            # Settle the table as a long-lived one is: vacuumed, analyzed and written
            # out. Otherwise autovacuum and the checkpoint after a fresh million-row
            # insert work through it during the drain (the superuser's CHECKPOINT).
            cursor.execute("VACUUM ANALYZE jobs_job")
            cursor.execute("CHECKPOINT")
    return time.perf_counter() - started


def run(kind: str, rows: int, jobs: int, rounds: int) -> dict:
    url, empty_url = database_url(kind, "scale"), database_url(kind, "scale_empty")
    setup(url)
    from django.db import connection

    from jobs.models import Job

    load_s = load(rows)
    # Alternating, best of each: the machine is shared, and noise is larger than the effect.
    empty, full = 0.0, 0.0
    for _ in range(rounds):
        empty = max(empty, drain(empty_url, jobs))
        full = max(full, drain(url, jobs))
    preloaded = Job.objects.filter(worker_id="preload", status="done").count()
    if preloaded != rows:
        raise SystemExit(f"expected {rows} preloaded done jobs, found {preloaded}")
    connection.close()
    drop_database(url)
    drop_database(empty_url)
    return emit(
        {
            "bench": "scale",
            "db": kind,
            "finished_rows": rows,
            "jobs": jobs,
            "rounds": rounds,
            "load_s": round(load_s, 1),
            "empty_drain_jobs_per_s": round(empty),
            "full_drain_jobs_per_s": round(full),
            "ratio": round(full / empty, 3),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.db, args.rows, args.jobs, args.rounds)


if __name__ == "__main__":
    main()
