"""The public Python API: queue jobs, look them up, cancel and retry them.

Import it from the app's package (``from jobs import enqueue, send_email``): the
names are re-exported lazily by ``jobs/__init__.py``. Every job goes through the
same checks as ``POST /api/jobs`` (``lifecycle.check_job``: a registered task, the
payload's size, depth and NUL limits, its task's schema, e.g. the host allow-list
of ``http_request``, and each option's range), and nothing is created when one
fails. Errors are the queue's own (``jobs.exceptions``):

- ``InvalidJob`` (``UnknownTask`` for a task that is not registered): ``errors``
  maps each field (``"payload.to"``, ``"3.priority"`` in a bulk) to its messages;
- ``JobNotFound``: no job has this id;
- ``TransitionRefused``: the job's status does not allow the change (``current``).

A job queued inside ``transaction.atomic()`` commits or rolls back with it. This is
an adapter over ``jobs.lifecycle``, the internal state machine, beside the API and
the admin: it must not import them, nor the worker or the ``django.tasks`` backend.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from django.conf import settings
from django.utils import timezone

from jobs import lifecycle
from jobs.exceptions import InvalidJob, JobNotFound, TransitionRefused
from jobs.models import Job, Workflow

# The options of a job, beside its task and payload (``enqueue``'s keyword arguments).
OPTIONS = ("queue", "priority", "run_after", "max_attempts", "timeout", "concurrency_key")
UNSUPPORTED = "Not supported in a bulk enqueue."


class JobOptions(TypedDict, total=False):
    """``enqueue``'s options, which the built-in tasks' helpers take too."""

    queue: str | None
    priority: int | None
    run_after: datetime | None
    max_attempts: int | None
    timeout: float | None
    idempotency_key: str | None
    concurrency_key: str | None


def enqueue(
    *,
    task: str,
    payload: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
) -> Job:
    """Queue one job of the registered ``task``; return it.

    ``None`` (an option not given) is the task's default. With an ``idempotency_key``
    that an unfinished job holds, return that job and create nothing. Raises
    ``InvalidJob`` (``UnknownTask``).
    """
    job, _ = lifecycle.enqueue(
        task=task,
        payload=payload,
        queue=queue,
        priority=priority,
        run_after=_aware(run_after),
        max_attempts=max_attempts,
        timeout=timeout,
        idempotency_key=idempotency_key,
        concurrency_key=concurrency_key,
    )
    return job


def enqueue_many(*, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
    """Queue many jobs in one write, in order; each is a mapping of ``enqueue``'s
    arguments (``task`` required, no ``idempotency_key``). Return them.

    All or nothing: raises ``InvalidJob`` naming each bad job by index (``"3.payload"``).
    """
    specs: list[dict[str, Any]] = []
    errors: dict[str, list[str]] = {}
    for index, spec in enumerate(jobs):
        if not isinstance(spec, Mapping):
            errors[str(index)] = ["Give a mapping of enqueue()'s arguments."]
            continue
        for name in sorted(set(spec) - {"task", "payload", *OPTIONS}):
            one_job_only = name == "idempotency_key"  # as in a bulk POST /api/jobs
            errors[f"{index}.{name}"] = [UNSUPPORTED if one_job_only else "Unknown field."]
        if "task" not in spec:
            errors[f"{index}.task"] = ["This field is required."]
        specs.append({**spec, "run_after": _aware(spec.get("run_after"))})
    if errors:
        raise InvalidJob(errors)
    return lifecycle.enqueue_many(specs)


def send_email(
    *,
    to: str | Sequence[str],
    subject: str,
    body: str,
    html: str | None = None,
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    reply_to: str | Sequence[str] | None = None,
    from_email: str | None = None,
    **options: Unpack[JobOptions],
) -> Job:
    """Queue the built-in ``send_email`` task: one message through the project's mailer.

    ``from_email`` is the payload's ``from`` (default: ``DEFAULT_FROM_EMAIL``);
    ``options`` are ``enqueue``'s (``queue``, ``priority``, ``run_after``,
    ``max_attempts``, ``timeout``, ``idempotency_key``). Raises ``InvalidJob``.
    """
    fields = {"to": to, "subject": subject, "body": body, "html": html, "cc": cc, "bcc": bcc}
    fields |= {"reply_to": reply_to, "from": from_email}
    return enqueue(task="send_email", payload=_payload(fields), **options)


def http_request(
    *,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    body: str | None = None,
    request_timeout: float | None = None,
    expected_status: int | Sequence[int] | None = None,
    **options: Unpack[JobOptions],
) -> Job:
    """Queue the built-in ``http_request`` task: one call to a host of
    ``JOBS_HTTP_ALLOWED_HOSTS``.

    ``json`` (a JSON body; ``None``: none) or ``body`` (text), not both;
    ``request_timeout`` is the payload's ``timeout`` (seconds per request, default
    ``JOBS_HTTP_TIMEOUT``), ``options`` are ``enqueue``'s, whose ``timeout`` limits the
    whole attempt. Raises ``InvalidJob``.
    """
    fields = {"method": method, "url": url, "headers": headers, "json": json, "body": body}
    fields |= {"timeout": request_timeout, "expected_status": expected_status}
    return enqueue(task="http_request", payload=_payload(fields), **options)


def pause_queue(*, name: str) -> None:
    """Stop workers claiming queue ``name``'s jobs (running ones finish; enqueueing goes on).

    Stored in the database: it survives restarts. Raises ``ValueError`` for a bad name.
    """
    lifecycle.pause_queue(name=_queue_name(name))


def resume_queue(*, name: str) -> None:
    """Let workers claim queue ``name``'s jobs again; idle workers wake at once."""
    lifecycle.resume_queue(name=_queue_name(name))


def queue_state(*, name: str) -> dict[str, Any]:
    """Return queue ``name``'s flow control and usage: ``paused``, ``concurrency``,
    ``key_concurrency``, ``rate``, ``key_rate`` (each as in force), ``processing``,
    ``queued``, ``due``."""
    return lifecycle.queue_state(_queue_name(name))


def enqueue_workflow(*, jobs: Sequence[Mapping[str, Any]], name: str = "") -> Workflow:
    """Create a workflow of ``jobs`` in one transaction; return it (``workflow.jobs``).

    Each job is a dict of ``enqueue``'s arguments (no ``idempotency_key``) with a
    ``name`` unique in the workflow, ``after`` (the names of the jobs it waits for) and
    ``on_parent_failure`` (``"cancel"``, the default, or ``"run"``). Raises
    ``InvalidJob`` naming a cycle (``"jobs"``), an unknown name (``"jobs.2.after"``), a
    repeated name or an invalid job; nothing is created then.
    """
    return lifecycle.enqueue_workflow(jobs=[_job_spec(job) for job in jobs], name=name)


def chain(*, jobs: Sequence[Mapping[str, Any]], name: str = "") -> Workflow:
    """Run ``jobs`` (dicts of ``enqueue``'s arguments) one after another, each seeing its
    parent's outcome in ``jobs.tasks.parent_results()``; a failure cancels the rest.
    Jobs without a ``name`` are named ``step-<n>``. Returns the workflow."""
    named = [{"name": f"step-{i}", **job} for i, job in enumerate(jobs)]
    linked = [job | ({"after": [named[i - 1]["name"]]} if i else {}) for i, job in enumerate(named)]
    return enqueue_workflow(jobs=linked, name=name)


def group(
    *, jobs: Sequence[Mapping[str, Any]], then: Mapping[str, Any], name: str = ""
) -> Workflow:
    """Run ``jobs`` in parallel, then ``then`` once all have ended, however they ended:
    it gets every member's outcome (``parent_results()``) and decides. Members without a
    ``name`` are named ``member-<n>``, the callback ``then``. Returns the workflow."""
    members = [{"name": f"member-{i}", **job} for i, job in enumerate(jobs)]
    callback = {"name": "then", **then}
    callback |= {"after": [m["name"] for m in members], "on_parent_failure": "run"}
    return enqueue_workflow(jobs=[*members, callback], name=name)


def workflow_state(*, workflow_id: uuid.UUID | str) -> dict[str, Any]:
    """The workflow's state (``running``, ``done``, ``failed``, ``cancelled``) and its
    jobs' count by status. Raises ``LookupError`` for an unknown workflow."""
    return lifecycle.workflow_state(_workflow(workflow_id))


def cancel_workflow(*, workflow_id: uuid.UUID | str) -> dict[str, Any]:
    """Cancel the workflow's jobs that have not started (running ones finish); return its
    state. Raises ``LookupError`` for an unknown workflow."""
    workflow = _workflow(workflow_id)
    lifecycle.cancel_workflow(workflow_id=workflow.pk)
    return lifecycle.workflow_state(workflow)


def _workflow(workflow_id: uuid.UUID | str) -> Workflow:
    try:
        return Workflow.objects.get(pk=uuid.UUID(str(workflow_id)))
    except (ValueError, Workflow.DoesNotExist):
        raise LookupError(f"no workflow {workflow_id}") from None


def _job_spec(job: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(job)
    if "run_after" in spec:
        spec["run_after"] = _aware(spec["run_after"])
    return spec


def _queue_name(name: str) -> str:
    if not isinstance(name, str) or not lifecycle.QUEUE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a queue name: 1-100 letters, digits, '_', '.', ':', '-'")
    return name


def get_job(*, job_id: uuid.UUID | str) -> Job:
    """Return the job ``job_id``. Raises ``JobNotFound``."""
    job = Job.objects.filter(pk=_uuid(job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    return job


def cancel(*, job_id: uuid.UUID | str) -> Job:
    """Cancel a queued, waiting or running job; return it. A running task is told at its next
    heartbeat, and its result discarded. Raises ``JobNotFound``, or ``TransitionRefused``
    when the job is finished."""
    return _transition(lifecycle.cancel, job_id)


def retry(*, job_id: uuid.UUID | str) -> Job:
    """Queue a failed, cancelled or done job again, to run as soon as possible; return it.
    Raises ``JobNotFound``, or ``TransitionRefused`` when it is queued or running (or
    another unfinished job holds its idempotency key)."""
    return _transition(lifecycle.retry, job_id)


def _transition(verb: Any, job_id: uuid.UUID | str) -> Job:
    try:
        return verb(job_id=_uuid(job_id))
    except TransitionRefused as exc:
        if exc.current is None:
            raise JobNotFound(job_id) from None
        raise


def _uuid(job_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(job_id) from None


def _aware(when: Any) -> Any:
    """A naive ``run_after`` in the current time zone, as the API and Django's forms take it."""
    if isinstance(when, datetime) and settings.USE_TZ and timezone.is_naive(when):
        return timezone.make_aware(when)
    return when


def _payload(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a built-in task: the fields given, sequences as the JSON lists
    its schema takes (a tuple of addresses is a list of them, a mapping a dict)."""
    return {name: _plain(value) for name, value in fields.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return value
