"""Worker memory: RSS of one worker and its executor processes after 1,000 and 100,000 jobs.

    python -m bench.memory sqlite|postgres [--first 1000] [--total 100000]

Starts one long-running ``runworker`` (its defaults), queues ``--first`` jobs,
waits until they are done and reads VmRSS of the worker and of every process
below it (forkserver, executor children) from /proc; then queues the rest up
to ``--total``, waits again and reads RSS again.

The jobs run ``bench.mark`` (``bench/tasks.py``: as cheap as noop, but each run
appends the job's number to a file), so the check sees a job that ran twice
even if its row ends ``done`` with one attempt.
"""

import argparse
import os
from pathlib import Path

from bench.common import (
    DATABASES,
    SQLITE_DIR,
    database_url,
    drop_database,
    emit,
    start_workers,
    stop_workers,
    wait_for,
)
from bench.django_env import setup


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, found through /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue  # the task exited meanwhile
    return found


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def snapshot(pid: int) -> dict[str, float]:
    """RSS in MB of the worker alone and of the worker with all its descendants."""
    pids = descendants(pid)
    return {
        "worker_mb": round(rss_kb(pid) / 1024, 1),
        "total_mb": round(sum(rss_kb(p) for p in pids) / 1024, 1),
        "processes": len(pids),
    }


def run(kind: str, first: int, total: int) -> dict:
    url = database_url(kind, "memory")
    marks = SQLITE_DIR / "memory-runs.txt"
    marks.unlink(missing_ok=True)
    os.environ["BENCH_MARK_FILE"] = str(marks)
    os.environ["JOBS_TASK_MODULES"] = "bench.tasks"
    setup(url)
    from django.db import connection

    from bench.outcome import check_outcome
    from bench.tasks import runs
    from jobs import lifecycle
    from jobs.models import Job

    def enqueue(start: int, stop: int) -> None:
        for chunk in range(start, stop, 5000):
            specs = [
                {"task": "bench.mark", "payload": n} for n in range(chunk, min(chunk + 5000, stop))
            ]
            lifecycle.enqueue_many(specs)

    def done(n: int) -> bool:
        return Job.objects.filter(status="done").count() >= n

    worker = start_workers(1, url)[0]
    try:
        enqueue(0, first)
        wait_for(lambda: done(first), timeout=120, interval=0.2)
        after_first = snapshot(worker.pid)
        enqueue(first, total)
        wait_for(lambda: done(total), timeout=900, interval=0.5)
        after_total = snapshot(worker.pid)
    finally:
        stop_workers([worker])
    check_outcome(total)
    executions = runs(marks)
    marks.unlink()
    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "memory",
            "db": kind,
            f"after_{first}": after_first,
            f"after_{total}": after_total,
            "worker_growth_mb": round(after_total["worker_mb"] - after_first["worker_mb"], 1),
            "total_growth_mb": round(after_total["total_mb"] - after_first["total_mb"], 1),
            **executions,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--first", type=int, default=1000)
    parser.add_argument("--total", type=int, default=100_000)
    args = parser.parse_args()
    run(args.db, args.first, args.total)


if __name__ == "__main__":
    main()
