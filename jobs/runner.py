"""Run one claimed job: resolve its task, call it, report the outcome to the lifecycle.

The worker, ``POST /api/jobs/{id}/run`` and the admin's "run now" all run jobs
through ``execute``, so a job behaves the same whoever runs it: a registered
task or a ``django.tasks`` task (whose spec carries hooks that send Django's
``task_started`` / ``task_finished`` signals around each attempt).
"""

import json
import logging
import traceback as tb
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from jobs import lifecycle, tasks
from jobs.exceptions import PermanentFailure, TransitionRefused, UnknownTask
from jobs.models import Job

logger = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON data; raise ``TypeError`` if it cannot be."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def error_class_name(exc: BaseException) -> str:
    """Name the exception's class as tracebacks do: ``ValueError``, ``pkg.mod.Error``."""
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def execute(job: Job, *, worker_id: str) -> str:
    """Run a job ``worker_id`` has claimed and record the outcome; return the new status.

    Exceptions from the task (``SystemExit`` included) are recorded, never
    raised; ``KeyboardInterrupt`` propagates. If the job was taken away
    meanwhile (cancelled, recovered), the outcome is discarded and the job's
    current status returned.
    """
    try:
        spec = tasks.get(job.task)
    except UnknownTask as exc:
        return _report_failure(job, worker_id, exc, retry=False)
    with tasks.running(job, worker_id):
        _hook(spec.started, job)
        try:
            result = _json_safe(spec(job.payload))
        except (Exception, SystemExit) as exc:
            status = _report_failure(
                job, worker_id, exc, retry=not isinstance(exc, PermanentFailure)
            )
            _hook(spec.finished, job)  # inside the handler: receivers see exc_info
            return status
    status = _report_success(job, worker_id, result)
    _hook(spec.finished, job)
    return status


def _hook(hook: tasks.Hook | None, job: Job) -> None:
    if hook is None:
        return
    try:
        hook(job)
    except Exception:
        logger.exception("job=%s task=%s hook failed", job.pk, job.task)


def _report_success(job: Job, worker_id: str, result: Any) -> str:
    try:
        lifecycle.succeed(job=job, worker_id=worker_id, result=result)
    except TransitionRefused as refused:
        logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
        return refused.current or "deleted"
    return job.status


def _report_failure(job: Job, worker_id: str, exc: BaseException, *, retry: bool) -> str:
    error = f"{error_class_name(exc)}: {exc}"
    trace = "".join(tb.format_exception(exc))
    logger.error("job=%s task=%s failed: %s", job.pk, job.task, error, exc_info=exc)
    try:
        return lifecycle.fail(
            job=job, worker_id=worker_id, error=error, traceback=trace, retry=retry
        )
    except TransitionRefused as refused:
        logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
        return refused.current or "deleted"


def run_now(*, job_id: Any) -> Job:
    """Claim a queued (or hand-held) job and run it in this process; return it afterwards.

    Raises ``TransitionRefused`` when a worker holds it or it has finished.
    """
    worker_id = lifecycle.new_worker_id("run")
    job = lifecycle.claim_for_run(job_id=job_id, worker_id=worker_id)
    execute(job, worker_id=worker_id)
    return Job.objects.get(pk=job.pk)
