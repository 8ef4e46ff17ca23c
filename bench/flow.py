"""The claim's cost with and without flow control (README, "Flow control").

    python -m bench.flow sqlite|postgres [--mode none|paused-other|...|task-limited|rate]
    python -m bench.flow report      # every mode on both databases: docs/flow.md

Times ``lifecycle.claim(limit=100)`` over a 32,000-job backlog on a fresh database:
the median and the 10th percentile of 300 claims, each claim's jobs then finished
(outside the timing, so limits free up as they would). Modes: ``none``, no flow
control; ``paused-other``, another queue paused; ``other-limited``, another queue
limited (the worker serves all queues); ``limited``, the claimed queue limited to
1,000 processing; ``keyed``, every job with one of 1,000 concurrency keys (1 each);
``task-limited``, every job of a task limited to 1,000 processing; ``rate``, the claimed
queue limited to 100 starts per millisecond.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, database_url, drop_database, emit
from bench.django_env import setup

MODES = ["none", "paused-other", "other-limited", "limited", "keyed", "task-limited", "rate"]
JOBS, CLAIMS, BATCH = 32_000, 300, 100


def run(kind: str, mode: str) -> dict:
    url = database_url(kind, f"flow_{mode.replace('-', '_')}")
    os.environ["JOBS_TASK_MODULES"] = "bench.tasks"  # bench.limited
    setup(url)
    from django.db import connection

    from jobs import lifecycle
    from jobs.lifecycle import flow
    from jobs.models import Job, Queue, Status

    queues = {
        "paused-other": {"name": "mail", "paused": True},
        "other-limited": {"name": "mail", "concurrency": 5},
        "limited": {"name": "q", "concurrency": 1000},
        "rate": {"name": "q", "rate": "100/0.001s"},
    }
    if mode in queues:
        Queue.objects.create(**queues[mode])
    keyed = mode == "keyed"
    task = "bench.limited" if mode == "task-limited" else "noop"
    lifecycle.enqueue_many(
        [
            {"task": task, "queue": "q"} | ({"concurrency_key": f"k{i % 1000}"} if keyed else {})
            for i in range(JOBS)
        ]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {Job._meta.db_table}")
    flow.state(refresh=True)
    times, claimed = [], 0
    for _ in range(CLAIMS):
        started = time.perf_counter()
        jobs = lifecycle.claim(worker_id="bench", limit=BATCH, starts=BATCH)
        times.append(time.perf_counter() - started)
        claimed += len(jobs)
        lifecycle.succeed_many(worker_id="bench", completions=[(job, None) for job in jobs])
    if Job.objects.filter(status=Status.PROCESSING).exists():
        raise RuntimeError("a claimed job was not finished")
    connection.close()
    drop_database(url)
    ordered = sorted(times)
    return emit(
        {
            "bench": "flow",
            "db": kind,
            "mode": mode,
            "claim_ms_median": round(statistics.median(times) * 1000, 2),
            "claim_ms_p10": round(ordered[len(ordered) // 10] * 1000, 2),
            "claimed_per_call": round(claimed / CLAIMS),
        }
    )


def report_all(output: Path) -> None:
    """Every mode on both databases, each in a process of its own; write the report."""
    from bench import report

    machine = report.machine()
    started = time.monotonic()
    rows: dict[tuple[str, str], dict] = {}
    for mode in MODES:
        for kind in ("sqlite", "postgres"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.flow", kind, "--mode", mode],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rows[kind, mode] = json.loads(done.stdout.strip().splitlines()[-1])
    table = [
        [
            LABELS[mode],
            *(rows[kind, mode][key] for kind in ("sqlite", "postgres") for key in KEYS),
            rows["postgres", mode]["claimed_per_call"],
        ]
        for mode in MODES
    ]
    report.write(
        output,
        report.standalone(
            "The claim's cost with and without flow control",
            machine,
            time.monotonic() - started,
            "SQLite and PostgreSQL, a fresh database per mode",
            f"## `lifecycle.claim(limit={BATCH})` over a {JOBS:,}-job backlog\n\n"
            f"The median and 10th percentile of {CLAIMS} claims (ms); each claim's jobs are "
            "then finished outside the timing.\n\n"
            + report.table(
                "claim of 100 due jobs | SQLite median | SQLite p10 | PostgreSQL median "
                "| PostgreSQL p10 | jobs per claim",
                table,
            ),
        ),
    )


LABELS = {
    "none": "no flow control configured",
    "paused-other": "another queue paused",
    "other-limited": "another queue limited (the worker serves every queue)",
    "limited": "from a queue limited to 1,000 processing",
    "keyed": "every job keyed (1,000 keys, 1 each)",
    "task-limited": "every job of a task limited to 1,000 processing",
    "rate": "from a rate-limited queue (100 per ms)",
}
KEYS = ("claim_ms_median", "claim_ms_p10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=["sqlite", "postgres", "report"])
    parser.add_argument("--mode", choices=MODES, default="none")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "flow.md")
    args = parser.parse_args()
    if args.db == "report":
        report_all(args.output)
    else:
        run(args.db, args.mode)


if __name__ == "__main__":
    main()
