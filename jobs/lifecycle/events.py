"""What every transition tells the world: one log line and the metrics counters.

Every lifecycle module logs on the one ``jobs.lifecycle`` logger defined here (the
README documents its lines and JSON keys). At the bottom of the package with
``transitions``: it reads the job it is given and writes nothing; a metrics failure
must never undo or hide a transition that is already committed.
"""

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from jobs.models import Job
from jobs.observability import metrics

# "jobs.lifecycle", whichever module logs: the README documents this logger.
logger = logging.getLogger(__package__)


def attempt_duration(job: Job, now: datetime) -> float | None:
    """Seconds from the attempt's start to ``now``; None when its start is unknown."""
    return round((now - job.started_at).total_seconds(), 6) if job.started_at else None


def log_transition(job: Job, verb: str, **fields: Any) -> None:
    """Log one line for a transition and count it in the metrics.

    The fields are in the message as ``key=value`` and on the record as extras
    (``job_id``, ``transition``, ``status``, ``task``, ``queue``, ``attempt``,
    ``worker``, and ``outcome``, ``duration``, ``error`` when known), which the
    JSON log format writes as keys.
    """
    _count_transition(job, verb, fields)
    if logger.isEnabledFor(logging.INFO):
        _log_line(job, verb, fields)


def log_enqueued(jobs: Sequence[Job]) -> None:
    """``log_transition(job, "enqueue")`` for each of ``jobs``, counted in the metrics
    once per task and queue rather than once per job."""
    for (task, queue), count in Counter((job.task, job.queue) for job in jobs).items():
        _count_safely(metrics.record_enqueued, task=task, queue=queue, count=count)
    if logger.isEnabledFor(logging.INFO):
        for job in jobs:
            _log_line(job, "enqueue", {})


def _log_line(job: Job, verb: str, fields: dict[str, Any]) -> None:
    fields = {key: value for key, value in fields.items() if value is not None}
    extra = {
        "job_id": str(job.pk),
        "transition": verb,
        "status": job.status,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempts,
        "worker": job.worker_id,
        **fields,
    }
    logger.info(
        "job=%s transition=%s status=%s task=%s queue=%s attempt=%s worker=%s%s",
        job.pk,
        verb,
        job.status,
        job.task,
        job.queue,
        job.attempts,
        job.worker_id,
        "".join(f" {key}={value}" for key, value in fields.items()),
        extra=extra,
    )


def log_claim(jobs: list[Job], worker_id: str) -> None:
    """Log one line for a worker's claim of ``jobs`` (the ids in claim order).

    One line per claim, not per job: at thousands of jobs a second, a line per job
    for the claim as well as the outcome cost a quarter of a worker's throughput.
    """
    if not jobs or not logger.isEnabledFor(logging.INFO):
        return
    ids = [str(job.pk) for job in jobs]
    logger.info(
        "transition=claim status=processing worker=%s count=%s jobs=%s",
        worker_id,
        len(ids),
        ",".join(ids),
        extra={
            "transition": "claim",
            "status": "processing",
            "worker": worker_id,
            "count": len(ids),
            "job_ids": ids,
        },
    )


def _count_transition(job: Job, verb: str, fields: dict[str, Any]) -> None:
    if verb == "enqueue":
        _count_safely(metrics.record_enqueued, task=job.task, queue=job.queue)
    elif fields.get("outcome"):
        _count_safely(
            metrics.record_attempt,
            task=job.task,
            queue=job.queue,
            outcome=fields["outcome"],
            status=job.status,
            duration=fields.get("duration"),
        )


def _count_safely(record: Callable[..., None], **kwargs: Any) -> None:
    # A metrics problem (an unwritable multiprocess directory, ...) must never
    # undo or hide a transition that is already committed.
    try:
        record(**kwargs)
    except Exception:
        logger.exception("metrics not recorded: %s", kwargs)
