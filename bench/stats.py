"""Time ``GET /api/stats`` on a PostgreSQL jobs table of ROWS rows (default 1,000,000).

    python -m bench.stats [postgres://postgres@127.0.0.1:5432/<throwaway db>] [--rows ROWS]
        [--repeat REPEAT]

Without a URL it runs in a fresh benchmark database (``BENCH_DB_PREFIX`` + ``stats``,
dropped after). A database given is migrated and its jobs are DELETED first: use a
throwaway one.
Rows load with one ``INSERT ... SELECT generate_series`` in a production-like
mix over five queues (queued ones too): finished jobs spread over seven days (about 95% done,
3% failed, 1% cancelled), 0.5% queued (a tenth of them deferred) and 0.02%
processing, created in the last ten minutes. After
``VACUUM ANALYZE`` (what autovacuum keeps up on a live table) the endpoint is
requested REPEAT times (default 20) through Django's test client as a logged-in user,
after one warm-up request. Prints one JSON line (load seconds, request times in ms, the
number of queries and how many jobs rows each one read) and writes docs/stats.md
(``--output`` elsewhere).
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ROOT, percentile, scratch_postgres

LOAD = """
INSERT INTO jobs_job (id, task, status, queue, priority, attempts, max_attempts,
    created_at, updated_at, started_at, finished_at, run_after, worker_id,
    lease_expires_at, progress_message, payload, result, has_dependents)
SELECT gen_random_uuid(), 'echo', s.status, 'q' || (i / 200 %% 5), 0,
    CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END, 3,
    ts.t, ts.t,
    CASE WHEN s.status = 'queued' THEN NULL ELSE ts.t END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN ts.t + interval '1 second' END,
    CASE WHEN s.status = 'queued' AND i %% 2000 = 0 THEN now() + interval '1 hour' END,
    CASE WHEN s.status = 'processing' THEN 'bench-worker' END,
    CASE WHEN s.status = 'processing' THEN now() + interval '30 seconds' END,
    '', to_jsonb(i), NULL, false
FROM generate_series(1, %(rows)s) AS i,
LATERAL (SELECT CASE
    WHEN i %% 5000 = 4999 THEN 'processing'
    WHEN i %% 200 = 0 THEN 'queued'
    WHEN i %% 100 < 3 THEN 'failed'
    WHEN i %% 100 = 3 THEN 'cancelled'
    ELSE 'done' END AS status) AS s,
-- finished jobs over the last seven days; active ones from the last ten minutes
LATERAL (SELECT CASE WHEN s.status IN ('queued', 'processing')
    THEN now() - (i %% 600) * interval '1 second'
    ELSE now() - (%(rows)s - i) * (interval '7 days' / %(rows)s) - interval '2 seconds'
    END AS t) AS ts
"""


def load(rows: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")  # with attempts, schedule fires
        cursor.execute(LOAD, {"rows": rows})
        cursor.execute("VACUUM ANALYZE jobs_job")
    return time.perf_counter() - started


def rows_read(queries: list[dict[str, Any]]) -> list[int]:
    """Return, per query, how many jobs_job rows its plan actually read (EXPLAIN ANALYZE)."""
    from django.db import connection

    def walk(node: dict[str, Any]) -> int:
        here = 0
        if node.get("Relation Name") == "jobs_job":
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            here = read * node.get("Actual Loops", 1)
        return here + sum(walk(child) for child in node.get("Plans", []))

    counts = []
    with connection.cursor() as cursor:
        for query in queries:
            sql = query["sql"].lstrip()
            if "jobs_job" not in sql or not sql.upper().startswith("SELECT"):
                continue  # a planner estimate (EXPLAIN) reads no rows
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            counts.append(walk(plan[0]["Plan"]))
    return counts


def time_endpoint(repeat: int) -> tuple[list[float], list[dict[str, Any]], dict[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _ = get_user_model().objects.get_or_create(username="bench-stats")
    client = Client()
    client.force_login(user)
    client.get("/api/stats")  # warm up: connection, caches
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get("/api/stats")
            times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET /api/stats answered {response.status_code}: {response.content}")
    return times, captured.captured_queries, response.json()


def measure(url: str, rows: int, repeat: int) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue.settings")
    os.environ["JOBS_LOG_LEVEL"] = "WARNING"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    load_seconds = load(rows)
    times, queries, body = time_endpoint(repeat)
    record = {
        "bench": "stats",
        "db": "postgres",
        "database": url.rsplit("/", 1)[1],
        "rows": rows,
        "load_seconds": round(load_seconds, 1),
        "requests": repeat,
        "ms_median": round(statistics.median(times), 1),
        "ms_p95": round(percentile(times, 0.95), 1),
        "ms_max": round(max(times), 1),
        "queries": len(queries),
        "jobs_rows_read_per_query": rows_read(queries),
        "statuses": body["statuses"],
        "queued_per_queue": {name: q["queued"] for name, q in sorted(body["queues"].items())},
        "finished": body["finished"],
    }
    print(json.dumps(record), flush=True)
    return record


def markdown(record: dict[str, Any], machine: dict[str, Any], seconds: float) -> str:
    statuses = [
        [status, f"{s['count']:,}", "exact" if s["exact"] else "estimate"]
        for status, s in record["statuses"].items()
    ]
    queued = ", ".join(f"{name} {n:,}" for name, n in record["queued_per_queue"].items())
    read = record["jobs_rows_read_per_query"]
    timings = [
        ["requests timed", record["requests"]],
        ["median", f"{record['ms_median']} ms"],
        ["p95", f"{record['ms_p95']} ms"],
        ["slowest", f"{record['ms_max']} ms"],
        ["queries per request", record["queries"]],
        ["jobs rows read by each query", ", ".join(f"{n:,}" for n in read)],
        ["most jobs rows read by one query", f"{max(read, default=0):,}"],
    ]
    return report.standalone(
        "`GET /api/stats` on a large table",
        machine,
        seconds,
        f"PostgreSQL, `{record['database']}`",
        f"## Data\n\n{record['rows']:,} jobs loaded in {record['load_seconds']} s "
        "(with `VACUUM ANALYZE`): finished ones over seven days, active ones from the last "
        f"ten minutes; queued per queue: {queued}. Per status, as the endpoint answered:\n\n"
        + report.table("status | count | counted", statuses),
        "## Requests (Django's test client, a logged-in user, after one warm-up request)\n\n"
        "Rows read: per query, the jobs rows its plan read (`EXPLAIN ANALYZE`).\n\n"
        + report.table("|", timings),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="a throwaway PostgreSQL database (default: fresh)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "stats.md")
    args = parser.parse_args()
    if args.url and not args.url.startswith(("postgres://", "postgresql://")):
        parser.error("bench.stats needs a PostgreSQL URL (its database is emptied)")
    machine = report.machine()
    started = time.monotonic()
    with scratch_postgres(args.url, "stats") as url:
        record = measure(url, args.rows, args.repeat)
    report.write(args.output, markdown(record, machine, time.monotonic() - started))


if __name__ == "__main__":
    main()
