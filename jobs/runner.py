"""Run one claimed job: resolve its task, call it, report the outcome to the lifecycle.

The worker, ``POST /api/jobs/{id}/run`` and the admin's "run now" all run jobs
through ``execute``, so a job behaves the same whoever runs it: a registered
task or a ``django.tasks`` task (whose spec carries hooks that send Django's
``task_started`` / ``task_finished`` signals around each attempt).
"""

import json
import logging
import time
import traceback as tb
from collections.abc import Callable, Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

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


class Completions:
    """Successes waiting to be recorded together, in one short transaction.

    A database commit costs far more than a no-op task, so an executor records
    successes in groups: ``flush`` is due once the oldest waited ``max_delay``
    seconds or ``max_size`` are waiting, and the executor flushes whenever it
    has no next job in hand. Fencing is unchanged (each UPDATE is guarded on
    job, status, worker and attempt); a crash before the flush leaves those jobs
    processing, so recovery runs them again: at-least-once, never lost.
    """

    def __init__(self, worker_id: str, *, max_size: int = 200, max_delay: float = 0.005) -> None:
        self.worker_id = worker_id
        self.max_size = max_size
        self.max_delay = max_delay
        self.pending: list[tuple[Job, Any]] = []
        self.since = 0.0

    def add(self, job: Job, result: Any) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append((job, result))

    def due(self) -> bool:
        return bool(self.pending) and (
            len(self.pending) >= self.max_size or time.monotonic() - self.since >= self.max_delay
        )

    def flush(self) -> int:
        """Record every pending success; return how many were recorded."""
        pending, self.pending = self.pending, []
        return (
            lifecycle.succeed_many(worker_id=self.worker_id, completions=pending) if pending else 0
        )


def execute(
    job: Job,
    *,
    worker_id: str,
    completions: Completions | None = None,
    returned: Callable[[], None] | None = None,
) -> str:
    """Run a job ``worker_id`` has claimed and record the outcome; return the new status.

    The attempt starts now: ``job.started_at`` is set (unless the claim already
    did) and recorded with the outcome. Exceptions from the task (``SystemExit``
    included) are recorded, never raised; ``KeyboardInterrupt`` propagates. If
    the job was taken away meanwhile (cancelled, recovered, moved by hand), the
    outcome is discarded and the job's current status returned. With
    ``completions``, a success of a task without a ``finished`` hook is queued
    there (status ``"processing"`` until flushed). ``returned`` is called once
    the task's code has returned or raised, before the outcome is recorded.
    """
    if job.started_at is None:
        job.started_at = timezone.now()
    try:
        spec = tasks.get(job.task)
    except UnknownTask as exc:
        _call(returned)
        return _report_failure(job, worker_id, exc, retry=False)
    with tasks.running(job, worker_id, record_progress=lifecycle.report_progress):
        _hook(spec.started, job)
        try:
            result = _json_safe(spec(job.payload))
        except (Exception, SystemExit) as exc:
            _call(returned)
            status = _report_failure(
                job, worker_id, exc, retry=not isinstance(exc, PermanentFailure)
            )
            _hook(spec.finished, job)  # inside the handler: receivers see exc_info
            return status
    _call(returned)
    if completions is not None and spec.finished is None:
        completions.add(job, result)
        return job.status
    status = _report_success(job, worker_id, result)
    _hook(spec.finished, job)
    return status


def _call(callback: Callable[[], None] | None) -> None:
    if callback is not None:
        callback()


def attempt_stopped(job: Job) -> None:
    """Tell the task's listeners that an attempt ended without its executor reporting it.

    For an attempt the worker stopped (taken away, timed out) or lost with its
    executor: ``django.tasks`` receivers get ``task_finished`` with the job's
    recorded state, as after any other attempt.
    """
    try:
        spec = tasks.get(job.task)
    except UnknownTask:
        return
    _hook(spec.finished, job)


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


def run_due(
    *, worker_id: str | None = None, queues: Sequence[str] | None = None, limit: int | None = None
) -> list[Job]:
    """Run due jobs in this process, one at a time, until none is due or ``limit`` ran.

    Return the jobs that ran, in order, as each attempt left them (a failure with
    attempts left is queued again, its retry due later, so it does not run twice
    here). Jobs queued by a running task run too, if due. Timeouts are not enforced:
    there is no executor process to stop. For tests (``jobs.testing.run_jobs``) and
    a worker started inside a transaction.
    """
    worker_id = worker_id or lifecycle.new_worker_id("inline")
    ran: list[Job] = []
    while limit is None or len(ran) < limit:
        claimed = lifecycle.claim(worker_id=worker_id, queues=queues, limit=1)
        if not claimed:
            break
        execute(claimed[0], worker_id=worker_id)
        ran.append(claimed[0])
    found = Job.objects.in_bulk([job.pk for job in ran])
    return [found.get(job.pk, job) for job in ran]


def run_now(*, job_id: Any) -> Job:
    """Claim a queued (or hand-held) job and run it in this process; return it afterwards.

    Raises ``TransitionRefused`` when a worker holds it or it has finished.
    """
    worker_id = lifecycle.new_worker_id("run")
    job = lifecycle.claim_for_run(job_id=job_id, worker_id=worker_id)
    execute(job, worker_id=worker_id)
    return Job.objects.get(pk=job.pk)
