"""Time the job admin with a million jobs in PostgreSQL.

Loads ``--rows`` jobs (default 1,000,000) with one ``INSERT ... SELECT
generate_series`` into the database at ``BENCH_DATABASE_URL`` (created if
missing), analyzes the table, then renders the admin pages an operator uses
most, in process through Django's test client, ``--repeat`` times each after
one warm-up render; prints the timings as JSON and writes docs/admin-scale.md
(``--output`` elsewhere)::

    python -m bench.admin_scale                 # load (if needed) and time
    python -m bench.admin_scale --reload        # drop the jobs and load again
    python -m bench.admin_scale --explain "job list, search by id"   # one page's plans

The data: about 2% queued, 0.02% processing, 4% failed (six error classes), 2%
cancelled and the rest done, created over the last 30 days across three queues and
three tasks. Then "apply to all" (``lifecycle.apply_to_all``) retries ``--apply`` done
jobs (default 100,000) selected by a date filter, timed with its batches, and the
bench puts them back as they were (a bench's own reset, not an operator's action).
"""

import argparse
import json
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/jobqueue_bench"

LOAD_SQL = """
INSERT INTO jobs_job (
    id, task, payload, status, queue, priority, run_after, attempts, max_attempts,
    timeout, idempotency_key, result, error, error_class, traceback, created_at, updated_at,
    started_at, finished_at, worker_id, lease_expires_at, progress, progress_message,
    has_dependents
)
SELECT
    gen_random_uuid(),
    (ARRAY['echo', 'noop', 'simulate'])[1 + i %% 3],
    jsonb_build_object('order', i, 'customer', 'customer-' || (i %% 5000)),
    s.status,
    (ARRAY['default', 'mail', 'media'])[1 + i %% 7 %% 3],
    0, NULL,
    CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END, 3,
    NULL, NULL,
    CASE WHEN s.status = 'done' THEN '{"ok": true}'::jsonb END,
    CASE WHEN s.status = 'failed' THEN e.cause || ': order ' || i || ' was rejected' END,
    CASE WHEN s.status = 'failed' THEN e.cause END,
    CASE WHEN s.status = 'failed' THEN 'Traceback (most recent call last):\n  ...' END,
    c.created_at, c.created_at + interval '2 seconds',
    CASE WHEN s.status <> 'queued' THEN c.created_at + interval '1 second' END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled')
         THEN c.created_at + interval '2 seconds' END,
    CASE WHEN s.status <> 'queued' THEN 'host-' || (i %% 4) END,
    CASE WHEN s.status = 'processing' THEN now() + interval '30 seconds' END,
    NULL, '', false
FROM generate_series(1, %(rows)s) AS i
CROSS JOIN LATERAL (
    SELECT now() - (i * interval '30 days' / %(rows)s) AS created_at
) c
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN i %% 50 = 0 THEN 'queued'
        WHEN i %% 5000 = 1 THEN 'processing'
        WHEN i %% 100 BETWEEN 2 AND 5 THEN 'failed'
        WHEN i %% 100 BETWEEN 6 AND 7 THEN 'cancelled'
        ELSE 'done'
    END AS status
) s
CROSS JOIN LATERAL (
    SELECT (ARRAY['ValueError', 'KeyError', 'ConnectionError', 'shop.PaymentDeclined',
                  'TimeoutError', 'PermissionError'])[1 + i %% 13 %% 6] AS cause
) e
"""


def setup(url: str) -> None:
    """Create the database if needed, point Django at it and migrate."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue.settings")
    os.environ.setdefault("JOBS_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)


def load(rows: int, reload: bool) -> dict[str, Any]:
    """Fill the job table with ``rows`` jobs unless it holds that many already."""
    from django.db import connection

    from bench.common import load_bare

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'jobs_job'")
        present = cursor.fetchone()[0]
        if present >= rows * 0.95 and not reload:
            return {"loaded": False, "rows_estimate": present}
        started = time.perf_counter()
        cursor.execute("TRUNCATE jobs_job CASCADE")
        load_bare(cursor, LOAD_SQL, {"rows": rows})
        inserted = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE jobs_job")
    return {
        "loaded": True,
        "rows": rows,
        "insert_seconds": round(inserted, 1),  # with the indexes' builds
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def counts() -> dict[str, int]:
    """The jobs per status, counted exactly."""
    from django.db.models import Count

    from jobs.models import Job

    rows = Job.objects.order_by().values_list("status").annotate(n=Count("*"))
    return dict(sorted(rows))


def explain(client: Any, url: str) -> None:
    """Print ``EXPLAIN (ANALYZE, BUFFERS)`` of every query one render of ``url`` runs."""
    from django.db import connection

    seen: list[tuple[str, Any]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        client.get(url)
    with connection.cursor() as cursor:
        for sql, params in seen:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            print(sql[:300], "\n   ", "\n    ".join(row[0] for row in cursor.fetchall()), "\n")


class QueryTimer:
    """Count the queries of one render and add up the time each took."""

    def __init__(self) -> None:
        self.count, self.seconds = 0, 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.seconds += time.perf_counter() - started


def backend_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the PostgreSQL backend ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(client: Any, url: str, repeat: int) -> dict[str, Any]:
    """Wall time of each render, its queries' time, and the CPU both processes spent
    (this one's and its PostgreSQL backend's, a mean per render): on a shared machine
    the wall times include waiting for a core, the CPU time does not."""
    from django.db import connection

    client.get(url)  # warm caches and connections
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    times, timers = [], []
    cpu_started = time.process_time() + backend_cpu_seconds(backend)
    for _ in range(repeat):
        timers.append(QueryTimer())
        with connection.execute_wrapper(timers[-1]):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
    cpu = time.process_time() + backend_cpu_seconds(backend) - cpu_started
    return {
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "queries": timers[-1].count,
        "query_median_ms": round(statistics.median(t.seconds for t in timers) * 1000, 1),
        "cpu_mean_ms": round(cpu / repeat * 1000, 1),
    }


def pages() -> dict[str, str]:
    from urllib.parse import urlencode

    from django.urls import reverse
    from django.utils import timezone

    from jobs.models import Job, Status

    changelist = reverse("admin:jobs_job_changelist")
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    finished_today = urlencode(
        {"finished_at__gte": str(today), "finished_at__lt": str(today + timedelta(days=1))}
    )
    some_id = Job.objects.filter(status=Status.FAILED).values_list("pk", flat=True).first()
    return {
        "job list, default view": changelist,
        "job list, status = failed": f"{changelist}?status__exact=failed",
        "job list, search by id": f"{changelist}?q={some_id}",
        "job list, search by id prefix (8 characters)": f"{changelist}?q={str(some_id)[:8]}",
        "job list, queue = mail": f"{changelist}?queue=mail",
        "job list, has error": f"{changelist}?has_error=yes",
        "job list, finished today": f"{changelist}?{finished_today}",
        "job list, date hierarchy (this month)": (
            f"{changelist}?created_at__year={today.year}&created_at__month={today.month}"
        ),
        "job list, page 100": f"{changelist}?p=100",
        "job list, sorted by status": f"{changelist}?o=2",
        "job list, sorted by queue, descending": f"{changelist}?o=-4",
        "job page": reverse("admin:jobs_job_change", args=[some_id]),
        "dashboard": reverse("admin:jobs_dashboard"),
        "queues page": reverse("admin:jobs_queues"),
        "search text, frequent match": f"{changelist}?q=customer-42",
        "search text, no match, within status = failed": (
            f"{changelist}?q=no-such-text&status__exact=failed"
        ),
        "search text, no match at all": f"{changelist}?q=no-such-text",
        "search text, no match, within has error": f"{changelist}?q=no-such-text&has_error=yes",
        "failures by cause": reverse("admin:jobs_failures"),
        "changelist failures of one cause": (
            f"{changelist}?status__exact=failed&error_class=KeyError&task=echo"
        ),
    }


def apply_to_all(rows: int) -> dict[str, Any]:
    """Retry ``rows`` done jobs (the oldest, by a created_at filter) with the admin's
    "apply to all", time it, then reset them to done with one UPDATE."""
    from django.db import connection

    from jobs import lifecycle
    from jobs.conf import conf
    from jobs.models import Job, Status

    done = Job.objects.filter(status=Status.DONE).order_by("created_at")
    cutoff = done.values_list("created_at", flat=True)[rows - 1]
    chosen = Job.objects.filter(status=Status.DONE, created_at__lte=cutoff)
    ids = list(chosen.values_list("pk", flat=True))
    started = time.perf_counter()
    result = lifecycle.apply_to_all(verb="retry", jobs=chosen)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE jobs_job SET status = 'done', run_after = NULL, max_attempts = 3, "
            "finished_at = created_at + interval '2 seconds', worker_id = 'host-0' "
            "WHERE id = ANY(%s)",
            [ids],
        )
        cursor.execute("VACUUM ANALYZE jobs_job")
    return {
        "verb": "retry",
        "matching": len(ids),
        "changed": result.changed,
        "batches": result.batches,
        "batch_size": conf.MAX_BULK,
        "seconds": round(seconds, 1),
        "jobs_per_second": round(result.changed / seconds) if seconds else None,
    }


def markdown(result: dict[str, Any], machine: dict[str, Any], seconds: float) -> str:
    from bench import report

    loaded = result["load"]
    statuses = ", ".join(f"{status} {n:,}" for status, n in result["statuses"].items())
    load = (
        f"inserted in {loaded['insert_seconds']} s, {loaded['total_seconds']} s with "
        "`VACUUM ANALYZE`"
        if loaded["loaded"]
        else "already in the database from an earlier run (not timed)"
    )
    rows = [
        [
            name,
            page["median_ms"],
            page["max_ms"],
            page["queries"],
            page["query_median_ms"],
            page.get("cpu_mean_ms", ""),
        ]
        for name, page in result["pages"].items()
    ]
    sections = [
        "## Data\n\n"
        f"{sum(result['statuses'].values()):,} jobs ({statuses}), created over the last "
        f"30 days across three queues and three tasks; {load}.\n",
        f"## Pages (median and worst of {result['repeat']} renders after one warm-up)\n\n"
        "Each page rendered in process through Django's test client as a superuser; "
        "*query ms* is the median of the time its queries took per render; *CPU ms* the "
        "CPU time this process and its PostgreSQL backend spent per render (a mean; "
        "parallel query workers not counted), which other work on the machine does not "
        "inflate as it does the wall times.\n\n"
        + report.table("page | median ms | max ms | queries | query ms | CPU ms", rows),
    ]
    if applied := result.get("apply to all"):
        sections.append(
            '## "Apply to all"\n\n'
            f'`lifecycle.apply_to_all(verb="{applied["verb"]}")` on the oldest done jobs, in '
            f"batches of `JOBS_MAX_BULK` ({applied['batch_size']:,}) that lock only their rows.\n\n"
            + report.table(
                "matching | changed | batches | seconds | jobs/s",
                [
                    [
                        f"{applied['matching']:,}",
                        f"{applied['changed']:,}",
                        applied["batches"],
                        applied["seconds"],
                        f"{applied['jobs_per_second']:,}",
                    ]
                ],
            )
        )
    return report.standalone(
        "The admin at scale", machine, seconds, f"PostgreSQL, `{result['database']}`", *sections
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--reload", action="store_true", help="drop and load the jobs again")
    parser.add_argument(
        "--apply", type=int, default=100_000, help='jobs "apply to all" retries (0: skip)'
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "admin-scale.md")
    parser.add_argument(
        "--explain", metavar="PAGE", help="print the plans of one page's queries (no report)"
    )
    args = parser.parse_args()
    from bench import report

    machine = report.machine()
    started = time.monotonic()
    setup(args.database_url)

    from django.contrib.auth import get_user_model
    from django.test import Client

    result: dict[str, Any] = {
        "database": args.database_url.rsplit("/", 1)[1],
        "load": load(args.rows, args.reload),
        "statuses": counts(),
        "repeat": args.repeat,
    }
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    if args.explain:
        explain(client, pages()[args.explain])
        return
    result["pages"] = {name: measure(client, url, args.repeat) for name, url in pages().items()}
    if args.apply:
        result["apply to all"] = apply_to_all(args.apply)
    print(json.dumps(result, indent=2))
    report.write(args.output, markdown(result, machine, time.monotonic() - started))


if __name__ == "__main__":
    main()
