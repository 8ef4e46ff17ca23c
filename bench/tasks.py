"""Tasks for benchmarks: ``bench.mark`` logs each run to a file (to see double runs),
``bench.sleep`` takes a while, ``bench.limited`` has a total concurrency limit.

Loaded through ``JOBS_TASK_MODULES=bench.tasks``. Each run appends its payload
(a job number) as one line to ``BENCH_MARK_FILE`` with a single ``O_APPEND``
write, so lines from concurrent executors never interleave. A number written
twice means the job ran twice, even when its row ends ``done`` with one attempt.
"""

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jobs.tasks import register


@register("bench.mark")
def mark(payload: Any) -> None:
    """Append the payload to BENCH_MARK_FILE (one line per run)."""
    fd = os.open(os.environ["BENCH_MARK_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{payload}\n".encode())
    finally:
        os.close(fd)


@register("bench.sleep")
def sleep(payload: Any) -> None:
    """Sleep ``payload`` seconds: a job that takes a while (the mixed workload)."""
    time.sleep(float(payload))


@register("bench.limited", concurrency=1000)
def limited(payload: Any) -> None:
    """Nothing, with at most 1,000 running at once (the flow-control bench)."""


def runs(path: Path) -> dict[str, int]:
    """How the jobs ran: ``never``, ``once``, ``twice_or_more`` (by job number), from the file."""
    counts = Counter(path.read_text().split()) if path.exists() else Counter()
    return {
        "runs": sum(counts.values()),
        "jobs_run_more_than_once": sum(1 for n in counts.values() if n > 1),
    }
