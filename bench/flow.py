"""The claim's cost with and without flow control (README, "Flow control").

    python -m bench.flow sqlite|postgres [--mode none|paused-other|other-limited|limited|keyed|rate]

Times ``lifecycle.claim(limit=100)`` over a 32,000-job backlog on a fresh database:
the median and the 10th percentile of 300 claims, each claim's jobs then finished
(outside the timing, so limits free up as they would). Modes: ``none``, no flow
control; ``paused-other``, another queue paused; ``other-limited``, another queue
limited (the worker serves all queues); ``limited``, the claimed queue limited to
1,000 processing; ``keyed``, every job with one of 1,000 concurrency keys (1 each);
``rate``, the claimed queue limited to 100 starts per millisecond.
"""

import argparse
import statistics
import time

from bench.common import database_url, drop_database, emit
from bench.django_env import setup

MODES = ["none", "paused-other", "other-limited", "limited", "keyed", "rate"]
JOBS, CLAIMS, BATCH = 32_000, 300, 100


def run(kind: str, mode: str) -> dict:
    url = database_url(kind, f"flow_{mode.replace('-', '_')}")
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
    lifecycle.enqueue_many(
        [
            {"task": "noop", "queue": "q"} | ({"concurrency_key": f"k{i % 1000}"} if keyed else {})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=["sqlite", "postgres"])
    parser.add_argument("--mode", choices=MODES, default="none")
    args = parser.parse_args()
    run(args.db, args.mode)


if __name__ == "__main__":
    main()
