"""Jobs seen as ``django.tasks`` results: how a ``Job`` row becomes a ``TaskResult``.

Status mapping:

============  ==================  ==========================================
Job status    TaskResultStatus    note
============  ==================  ==========================================
queued        READY               also after a failed attempt that will be retried
processing    READY               claimed, not started: waiting in an executor's hand
processing    RUNNING             started (``started_at`` set)
done          SUCCESSFUL          ``return_value`` is the job's result
failed        FAILED              out of attempts, or a permanent failure
cancelled     FAILED              ``errors`` ends with ``jobs.exceptions.JobCancelled``
============  ==================  ==========================================

Retries: every attempt appends its worker to ``worker_ids`` (so ``attempts``
counts them) and every attempt that did not succeed appends a ``TaskError``
(failed: the exception's class and traceback; worker lost:
``jobs.exceptions.WorkerLost``; timed out: ``jobs.exceptions.AttemptTimedOut``).
A failed attempt with attempts left shows as READY with its error already in
``errors``. ``started_at`` is the first attempt's start, ``last_attempted_at``
the latest one's; an attempt counts from when it starts executing, not from its
claim. An attempt handed back unfinished (a worker's second stop
signal) is not archived, so it counts in the job's ``attempts`` but not here.
"""

import builtins
from collections.abc import Sequence
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus, task_backends
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend

from jobs.exceptions import (
    AttemptTimedOut,
    JobCancelled,
    JobsError,
    PermanentFailure,
    WorkerLost,
)
from jobs.models import FINISHED_STATUSES, Job, JobAttempt, Outcome, Status

STATUS_MAP = {
    Status.QUEUED: TaskResultStatus.READY,
    Status.WAITING: TaskResultStatus.READY,  # a workflow's job waiting for its parents
    Status.PROCESSING: TaskResultStatus.RUNNING,
    Status.DONE: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}

OUTCOME_ERRORS: dict[str, type[BaseException]] = {
    Outcome.LOST: WorkerLost,
    Outcome.CANCELLED: JobCancelled,
    Outcome.TIMED_OUT: AttemptTimedOut,
}


def split_payload(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """Return a stored payload's ``(args, kwargs)``. Raises ``PermanentFailure`` if malformed."""
    if isinstance(payload, dict):
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
    raise PermanentFailure('a django.tasks payload is {"args": [...], "kwargs": {...}}')


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_class_path(error: str | None) -> str:
    """Return the class path of a recorded ``"ClassName: message"`` error."""
    name = (error or "").split(":", 1)[0].strip()
    if name.isidentifier() and isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    if "." in name and all(part.isidentifier() for part in name.split(".")):
        return name
    return _path(JobsError)


def task_error(attempt: JobAttempt) -> TaskError:
    """Describe one unsuccessful attempt as a ``TaskError``."""
    cls = OUTCOME_ERRORS.get(attempt.outcome)
    path = _path(cls) if cls else error_class_path(attempt.error)
    trace = attempt.traceback or f"{path}: {attempt.error or attempt.outcome}\n"
    return TaskError(exception_class_path=path, traceback=trace)


def _alias(job: Job, task: Task) -> str:
    alias = job.payload.get("backend") if isinstance(job.payload, dict) else None
    try:
        task_backends[alias]
    except (InvalidTaskBackend, TypeError):
        return task.backend
    return alias


def _task_as_enqueued(job: Job, task: Task, alias: str) -> Task:
    try:
        return task.using(
            priority=job.priority, queue_name=job.queue, run_after=job.run_after, backend=alias
        )
    except InvalidTask:  # e.g. a queue the backend no longer lists
        return task


def _status(job: Job) -> TaskResultStatus:
    if job.status == Status.PROCESSING and job.started_at is None:
        return TaskResultStatus.READY  # claimed, but its attempt has not started
    return STATUS_MAP[job.status]


def _attempts(job: Job, history: Sequence[JobAttempt]) -> tuple[list[str], list[TaskError]]:
    worker_ids = [attempt.worker_id or "" for attempt in history]
    errors = [task_error(attempt) for attempt in history]
    current_archived = bool(history) and history[-1].number == job.attempts
    current_started = job.started_at is not None and job.attempts
    if job.status in (Status.PROCESSING, Status.DONE) and current_started and not current_archived:
        worker_ids.append(job.worker_id or "")
    if job.status == Status.CANCELLED and not (errors and current_archived):
        errors.append(task_error(JobAttempt(outcome=Outcome.CANCELLED, error="cancelled")))
    return worker_ids, errors


def _first_attempt_ok(job: Job) -> bool:
    """Whether the job cannot have history: never run, or running / done on its first attempt.

    Only unsuccessful attempts are archived, and any of them makes the next claim
    attempt 2 or more.
    """
    return job.attempts == 0 or (
        job.attempts == 1 and job.status in (Status.PROCESSING, Status.DONE)
    )


def build(
    job: Job,
    *,
    task: Task,
    history: Sequence[JobAttempt] | None = None,
    registered: bool = False,
) -> TaskResult:
    """Return ``job`` as a ``TaskResult`` of ``task``; ``history`` defaults to the job's.

    ``registered``: the job runs a registered task (``send_email``, ...), called with
    its payload, which is then the one argument (``args == [payload]``).
    """
    if history is None:
        history = [] if _first_attempt_ok(job) else list(job.history.all())
    if registered:
        args, kwargs = [job.payload], {}
    else:
        try:
            args, kwargs = split_payload(job.payload)
        except PermanentFailure:
            args, kwargs = [], {}
    worker_ids, errors = _attempts(job, history)
    attempted = job.attempts > 0
    first_start = history[0].started_at if history else None
    # A claimed attempt that has not started leaves the latest start to the one before.
    last_start = job.started_at or (history[-1].started_at if history else None)
    alias = task.backend if registered else _alias(job, task)
    result = TaskResult(
        task=_task_as_enqueued(job, task, alias),
        id=str(job.pk),
        status=_status(job),
        enqueued_at=job.created_at,
        started_at=(first_start or job.started_at) if attempted else None,
        last_attempted_at=last_start if attempted else None,
        finished_at=job.finished_at if job.status in FINISHED_STATUSES else None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        worker_ids=worker_ids,
    )
    if job.status == Status.DONE:
        object.__setattr__(result, "_return_value", job.result)
    return result
