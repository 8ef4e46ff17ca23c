"""Time ``GET /api/stats`` on a PostgreSQL jobs table of ROWS rows (default 1,000,000).

    python -m bench.stats postgres://postgres@127.0.0.1:5432/<throwaway db> [ROWS] [REPEAT]

The database is migrated and its jobs are DELETED first: use a throwaway one.
Rows load with one ``INSERT ... SELECT generate_series`` in a production-like
mix over five queues: finished jobs spread over seven days (about 95% done,
3% failed, 1% cancelled), 0.5% queued (a tenth of them deferred) and 0.02%
processing, created in the last ten minutes. After
``VACUUM ANALYZE`` (what autovacuum keeps up on a live table) the endpoint is
requested REPEAT times through Django's test client as a logged-in user. Prints
one JSON line: load seconds, request times (ms), the number of queries and how many
jobs rows each one read.
"""

import json
import os
import statistics
import sys
import time
from typing import Any

LOAD = """
INSERT INTO jobs_job (id, task, status, queue, priority, attempts, max_attempts,
    created_at, updated_at, started_at, finished_at, run_after, worker_id,
    lease_expires_at, progress_message, payload, result)
SELECT gen_random_uuid(), 'echo', s.status, 'q' || (i %% 5), 0,
    CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END, 3,
    ts.t, ts.t,
    CASE WHEN s.status = 'queued' THEN NULL ELSE ts.t END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN ts.t + interval '1 second' END,
    CASE WHEN s.status = 'queued' AND i %% 2000 = 0 THEN now() + interval '1 hour' END,
    CASE WHEN s.status = 'processing' THEN 'bench-worker' END,
    CASE WHEN s.status = 'processing' THEN now() + interval '30 seconds' END,
    '', to_jsonb(i), NULL
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


def main(url: str, rows: int = 1_000_000, repeat: int = 20) -> dict[str, Any]:
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench.stats needs a PostgreSQL URL (its database is emptied)")
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
        "rows": rows,
        "load_seconds": round(load_seconds, 1),
        "requests": repeat,
        "ms_median": round(statistics.median(times), 1),
        "ms_p95": round(sorted(times)[max(0, int(len(times) * 0.95) - 1)], 1),
        "ms_max": round(max(times), 1),
        "queries": len(queries),
        "jobs_rows_read_per_query": rows_read(queries),
        "statuses": body["statuses"],
        "finished": body["finished"],
    }
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    main(args[0], *(int(arg) for arg in args[1:3]))
