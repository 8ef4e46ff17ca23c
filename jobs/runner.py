"""Run one claimed job: resolve its task, call it, report the outcome to the lifecycle.

``call`` runs the task and captures what happened, touching no job row; a worker
runs it inside an executor child process. ``record`` reports that outcome through
the lifecycle. ``execute`` does both in this process: ``POST /api/jobs/{id}/run``
and the admin use it, so a job behaves the same whoever runs it.
"""

import json
import logging
import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from jobs import lifecycle, tasks
from jobs.exceptions import PermanentFailure, TransitionRefused, UnknownTask
from jobs.models import Job, Outcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What running a task produced: a JSON result, or an error and whether to retry."""

    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    retry: bool = True
    outcome: str = Outcome.FAILED


def _json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON data; raise ``TypeError`` if it cannot be."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def call(job: Job) -> Result:
    """Run the job's task on its payload; capture the result or the exception."""
    try:
        spec = tasks.get(job.task)
        return Result(ok=True, value=_json_safe(spec(job.payload)))
    except Exception as exc:
        logger.error("job=%s task=%s failed: %s", job.pk, job.task, exc, exc_info=exc)
        return failure(exc, retry=not isinstance(exc, (PermanentFailure, UnknownTask)))


def failure(exc: BaseException, *, retry: bool = True) -> Result:
    """Describe an exception as a failed ``Result``."""
    return Result(
        ok=False,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(tb.format_exception(exc)),
        retry=retry,
    )


def record(job: Job, *, worker_id: str, result: Result) -> str:
    """Report ``result`` for the attempt ``job`` describes; return the job's new status.

    If the job was taken away meanwhile (cancelled, recovered, deleted), the
    outcome is discarded and the status found is returned.
    """
    try:
        if result.ok:
            lifecycle.succeed(job=job, worker_id=worker_id, result=result.value)
            return job.status
        return lifecycle.fail(
            job=job,
            worker_id=worker_id,
            error=result.error or "failed",
            traceback=result.traceback,
            retry=result.retry,
            outcome=result.outcome,
        )
    except TransitionRefused as refused:
        logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
        return refused.current or "deleted"


def execute(job: Job, *, worker_id: str) -> str:
    """Run a job ``worker_id`` has claimed, in this process, and record the outcome."""
    return record(job, worker_id=worker_id, result=call(job))


def run_now(*, job_id: Any) -> Job:
    """Claim a queued (or hand-held) job and run it in this process; return it afterwards.

    Raises ``TransitionRefused`` when a worker holds it or it has finished.
    """
    worker_id = lifecycle.new_worker_id("run")
    job = lifecycle.claim_for_run(job_id=job_id, worker_id=worker_id)
    execute(job, worker_id=worker_id)
    return Job.objects.get(pk=job.pk)
