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
from django.db import DatabaseError
from django.utils import timezone

from jobs import lifecycle, tasks
from jobs.exceptions import (
    PermanentFailure,
    TransitionRefused,
    UnknownTask,
    database_unavailable,
)
from jobs.models import Job

logger = logging.getLogger(__name__)

# Retrying outcomes kept during a database outage: seconds before the first retry, at most.
OUTAGE_RETRY_BASE = 0.2
OUTAGE_RETRY_MAX = 2.0


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
    """Outcomes waiting to be recorded: successes grouped into one short transaction,
    and whatever a database outage kept from being written.

    A database commit costs far more than a no-op task, so an executor records
    successes in groups: ``flush`` is due once the oldest waited ``max_delay``
    seconds or ``max_size`` are waiting, and the executor flushes whenever it
    has no next job in hand. Fencing is unchanged (each UPDATE is guarded on
    job, status, worker and attempt); a crash before the flush leaves those jobs
    processing, so recovery runs them again: at-least-once, never lost.

    While the database cannot be reached (``jobs.exceptions.database_unavailable``)
    nothing is dropped: a success, a failure or a progress report that could not be
    written waits here, and ``flush`` is tried again after a backoff (``retry_in``)
    until it is. The worker keeps renewing those jobs' leases meanwhile, so a short
    outage delays an outcome instead of running the job a second time. A job taken
    away meanwhile (its lease expired, cancelled) is not overwritten: the writes
    are fenced, so its kept outcome is discarded.
    """

    def __init__(self, worker_id: str, *, max_size: int = 200, max_delay: float = 0.005) -> None:
        self.worker_id = worker_id
        self.max_size = max_size
        self.max_delay = max_delay
        self.pending: list[tuple[Job, Any]] = []  # successes
        self.failures: list[tuple[Job, dict[str, Any]]] = []  # lifecycle.fail's arguments
        self.progress: dict[Any, tuple[Job, int, str]] = {}  # the latest report per job
        self.hooks: dict[Any, tasks.Hook] = {}  # a task's `finished`, called once recorded
        self.settled: list[Any] = []  # ids whose outcome was written (or discarded)
        self.since = 0.0
        self.outages = 0  # flushes in a row that found the database unreachable
        self.retry_at = 0.0

    def add(self, job: Job, result: Any, *, finished: tasks.Hook | None = None) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append((job, result))
        if finished is not None:
            self.hooks[job.pk] = finished

    def add_failure(self, job: Job, finished: tasks.Hook | None, **outcome: Any) -> None:
        """Keep a failure the database could not take; ``outcome`` is ``lifecycle.fail``'s."""
        self.failures.append((job, outcome))
        if finished is not None:
            self.hooks[job.pk] = finished

    def waiting(self) -> bool:
        return bool(self.pending or self.failures or self.progress)

    def due(self) -> bool:
        if not self.waiting() or time.monotonic() < self.retry_at:
            return False
        return bool(
            self.outages
            or self.failures
            or self.progress
            or len(self.pending) >= self.max_size
            or time.monotonic() - self.since >= self.max_delay
        )

    def retry_in(self) -> float | None:
        """Seconds until the next try during an outage (0: now); None: no outage."""
        return max(0.0, self.retry_at - time.monotonic()) if self.outages else None

    def record_progress(self, *, job: Job, worker_id: str, percent: int, message: str = "") -> bool:
        """``lifecycle.report_progress``, kept for later while the database is unreachable."""
        if not self.outages:
            try:
                return lifecycle.report_progress(
                    job=job, worker_id=worker_id, percent=percent, message=message
                )
            except DatabaseError as exc:
                if not database_unavailable(exc):
                    raise
        self.progress[job.pk] = (job, percent, message)
        return True  # held, as far as this worker knows

    def flush(self) -> list[Any]:
        """Record everything waiting; return the ids of jobs whose outcome is now settled.

        Raises ``DatabaseError``: when the database is unreachable, what is not
        written yet stays here and ``retry_in`` says when to try again; for any
        other error, the caller ``drop``s the outcomes (the jobs run again).
        """
        try:
            self._write()
        except DatabaseError as exc:
            if database_unavailable(exc):
                self.outages += 1
                delay = lifecycle.backoff(
                    self.outages, base=OUTAGE_RETRY_BASE, cap=OUTAGE_RETRY_MAX
                )
                self.retry_at = time.monotonic() + delay
            raise
        self.outages, self.retry_at = 0, 0.0
        settled, self.settled = self.settled, []
        return settled

    def drop(self) -> list[Any]:
        """Forget every waiting outcome; return the ids of their jobs (not settled)."""
        ids = [job.pk for job, _ in (*self.pending, *self.failures)]
        self.pending, self.failures, self.progress, self.hooks = [], [], {}, {}
        self.outages, self.retry_at = 0, 0.0
        return ids

    def _write(self) -> None:
        # Progress first: a job's last report comes before its outcome, as it ran.
        while self.progress:
            job, percent, message = next(iter(self.progress.values()))
            lifecycle.report_progress(
                job=job, worker_id=self.worker_id, percent=percent, message=message
            )
            del self.progress[job.pk]
        while self.failures:
            job, outcome = self.failures[0]
            try:
                lifecycle.fail(job=job, worker_id=self.worker_id, **outcome)
            except TransitionRefused as refused:
                logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
            self.failures.pop(0)
            self._settle(job)
        if self.pending:
            lifecycle.succeed_many(worker_id=self.worker_id, completions=self.pending)
            pending, self.pending = self.pending, []
            for job, _ in pending:
                self._settle(job)

    def _settle(self, job: Job) -> None:
        self.settled.append(job.pk)
        _hook(self.hooks.pop(job.pk, None), job)


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
        return _report_failure(job, worker_id, exc, retry=False, completions=completions)
    record = lifecycle.report_progress if completions is None else completions.record_progress
    with tasks.running(job, worker_id, record_progress=record):
        _hook(spec.started, job)
        try:
            result = _json_safe(spec(job.payload))
        except (Exception, SystemExit) as exc:
            _call(returned)
            return _report_failure(
                job,
                worker_id,
                exc,
                retry=not isinstance(exc, PermanentFailure),
                finished=spec.finished,
                completions=completions,
            )
    _call(returned)
    if completions is not None and spec.finished is None:
        completions.add(job, result)
        return job.status
    return _report_success(job, worker_id, result, spec.finished, completions)


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


def _report_success(
    job: Job,
    worker_id: str,
    result: Any,
    finished: tasks.Hook | None,
    completions: Completions | None,
) -> str:
    try:
        lifecycle.succeed(job=job, worker_id=worker_id, result=result)
    except TransitionRefused as refused:
        logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
        _hook(finished, job)
        return refused.current or "deleted"
    except DatabaseError as exc:
        if completions is None or not database_unavailable(exc):
            raise
        completions.add(job, result, finished=finished)  # recorded once the database is back
        return job.status
    _hook(finished, job)
    return job.status


def _report_failure(
    job: Job,
    worker_id: str,
    exc: BaseException,
    *,
    retry: bool,
    finished: tasks.Hook | None = None,
    completions: Completions | None = None,
) -> str:
    """Record a failed attempt (inside the task's exception handler, so that the
    ``finished`` hook's receivers see ``exc_info``)."""
    error = f"{error_class_name(exc)}: {exc}"
    trace = "".join(tb.format_exception(exc))
    logger.error("job=%s task=%s failed: %s", job.pk, job.task, error, exc_info=exc)
    try:
        status = lifecycle.fail(
            job=job, worker_id=worker_id, error=error, traceback=trace, retry=retry
        )
    except TransitionRefused as refused:
        logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
        status = refused.current or "deleted"
    except DatabaseError as db_exc:
        if completions is None or not database_unavailable(db_exc):
            raise
        completions.add_failure(job, finished, error=error, traceback=trace, retry=retry)
        return job.status  # still processing: recorded once the database is back
    _hook(finished, job)
    return status


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
        if not lifecycle.start_rated(claimed[0]):  # its rate slot was taken again meanwhile
            lifecycle.release(jobs=claimed, worker_id=worker_id)
            break
        execute(claimed[0], worker_id=worker_id)
        ran.append(claimed[0])
    found = Job.objects.in_bulk([job.pk for job in ran])
    return [found.get(job.pk, job) for job in ran]


def run_now(*, job_id: Any) -> Job:
    """Claim a queued (or hand-held) job and run it in this process; return it afterwards.

    Raises ``TransitionRefused`` when a worker holds it or it has finished, or when its
    task is external (a remote worker runs it: it is left as it is).
    """
    task = Job.objects.filter(pk=job_id).values_list("task", "status").first()
    if task and task[0] in tasks.external_names():
        raise TransitionRefused(
            f"task {task[0]!r} is external: a remote worker runs it, not this server",
            current=task[1],
        )
    worker_id = lifecycle.new_worker_id("run")
    job = lifecycle.claim_for_run(job_id=job_id, worker_id=worker_id)
    execute(job, worker_id=worker_id)
    return Job.objects.get(pk=job.pk)
