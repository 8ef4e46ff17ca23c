"""Operator and client verbs on one job (the API, the admin's change page, the CLI).

``cancel``, ``retry``, ``set_status`` (a manual status edit, performed by the verb
``MANUAL_TRANSITIONS`` names), ``edit`` (a compare-and-set on the status the page
showed) and ``delete``. Each refuses with ``TransitionRefused`` or ``JobChanged``
rather than move a job the caller did not see; none runs or interrupts a task.
"""

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs.exceptions import JobChanged, TransitionRefused
from jobs.lifecycle import flow
from jobs.lifecycle.claim import claim_for_hand, release
from jobs.lifecycle.complete import fail, rerun_on_conflict, succeed
from jobs.lifecycle.dependents import parents_ended, retried
from jobs.lifecycle.events import log_transition, logger
from jobs.lifecycle.transitions import (
    CANCELLED,
    DONE,
    FAILED,
    MANUAL_TRANSITIONS,
    PROCESSING,
    QUEUED,
    WAITING,
    archive,
    refused,
)
from jobs.models import ACTIVE_STATUSES, Job, Outcome
from jobs.retention import mark_deleted

# The fields an operator may edit by hand (``edit``); the others belong to the state machine.
EDITABLE_FIELDS = ("payload", "queue", "priority", "run_after", "max_attempts", "timeout")


# Each verb below locks rows a worker or another operator may lock too. On InnoDB that can
# deadlock (error 1213), and the transaction is then rolled back whole: it runs again.
@rerun_on_conflict
def cancel(*, job_id: Any) -> Job:
    """Cancel a queued or processing job. Raises ``TransitionRefused`` otherwise.

    A running task is not interrupted here: its holder finds the job cancelled at
    its next heartbeat or when it reports, and its result is discarded.
    """
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status__in=ACTIVE_STATUSES).first()
        if job is None:
            raise refused(job_id, "cancel")
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=CANCELLED, finished_at=now, lease_expires_at=None, updated_at=now
        )
        if job.status == PROCESSING:
            archive([job], outcome=Outcome.CANCELLED, now=now, error="cancelled")
            flow.announce_freed([job])
        if job.has_dependents:
            parents_ended(ids=[job.pk], now=now)
    job.refresh_from_db()
    log_transition(job, "cancel")
    return job


@rerun_on_conflict
def retry(*, job_id: Any) -> Job:
    """Put a failed, cancelled or done job back in the queue, to run as soon as possible.

    ``attempts`` keeps counting (it fences stale workers), and ``max_attempts`` is
    raised if needed so the job gets at least one more attempt. Raises
    ``TransitionRefused`` if the job is not finished, or if another unfinished job
    holds its idempotency key.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = Job.objects.filter(pk=job_id, status__in=[FAILED, CANCELLED, DONE]).update(
                **requeue_changes(now)
            )
            if updated:
                retried(ids=[job_id], now=now)
    except IntegrityError:
        # Requeued, it would be a second unfinished holder of its idempotency key.
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        raise TransitionRefused(
            f"cannot retry job {job_id}: an unfinished job holds its idempotency key",
            current=current,
        ) from None
    if not updated:
        raise refused(job_id, "retry")
    job = Job.objects.get(pk=job_id)
    log_transition(job, "retry")
    return job


def set_status(*, job_id: Any, status: str) -> Job:
    """Apply a manual status edit (API ``PATCH /status``, the admin's status field).

    Setting the current status again changes nothing. Raises ``TransitionRefused``
    for an edit ``MANUAL_TRANSITIONS`` does not allow, or when the job changed
    meanwhile.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise TransitionRefused(f"job {job_id} does not exist", current=None)
    if job.status == status:
        return job
    verb = MANUAL_TRANSITIONS.get((job.status, status))
    if verb is None:
        targets = sorted(to for (frm, to) in MANUAL_TRANSITIONS if frm == job.status)
        raise TransitionRefused(
            f"cannot change a {job.status} job to {status} "
            f"(allowed: {', '.join(targets) or 'none'})",
            current=job.status,
        )
    if verb == "claim":
        return claim_for_hand(job_id=job.pk)
    if verb == "cancel":
        return cancel(job_id=job.pk)
    if verb == "retry":
        return retry(job_id=job.pk)
    holder = job.worker_id or ""
    if verb == "release":
        if not release(
            jobs=[job], worker_id=holder, started=True, reason="requeued by an operator"
        ):
            raise refused(job.pk, "release")
    elif verb == "succeed":
        succeed(job=job, worker_id=holder, result=job.result)
    else:
        fail(job=job, worker_id=holder, error="marked failed by an operator", retry=False)
    job.refresh_from_db()
    return job


@rerun_on_conflict
def edit(
    *,
    job_id: Any,
    seen: str,
    status: str | None = None,
    changes: dict[str, Any] | None = None,
) -> Job:
    """Apply an operator's edit of a job they saw in status ``seen``, all or nothing:
    a manual status change to ``status`` (as ``set_status``), then the field ``changes``.

    A compare-and-set on ``seen``: a page opened before a worker claimed or finished
    the job must not requeue it or edit it as if it were still waiting. Raises
    ``JobChanged`` when the job is no longer ``seen``, and ``TransitionRefused`` for a
    status change ``MANUAL_TRANSITIONS`` does not allow; nothing changes then.
    """
    changes = changes or {}
    if unknown := sorted(set(changes) - set(EDITABLE_FIELDS)):
        raise ValueError(f"not editable by hand: {', '.join(unknown)}")
    with transaction.atomic():
        # Lock the row in the status seen, so it cannot move until the writes below commit.
        if not Job.objects.select_for_update().filter(pk=job_id, status=seen).exists():
            current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
            raise JobChanged(
                f"job {job_id} changed since it was seen {seen}: it is {current or 'deleted'} now",
                current=current,
            )
        if status is not None and status != seen:
            set_status(job_id=job_id, status=status)
        if changes:
            Job.objects.filter(pk=job_id).update(**changes, updated_at=timezone.now())
    logger.info("job=%s edit status=%s fields=%s", job_id, status or seen, ",".join(changes))
    return Job.objects.get(pk=job_id)


@rerun_on_conflict
def delete(*, job_id: Any) -> Job:
    """Delete a job that is not running and return it as it was.

    Raises ``TransitionRefused`` for a processing job (its holder would go on running
    a job nobody can see or stop: cancel it first), or for a missing one.
    """
    with transaction.atomic():
        # Locked, so no worker claims it between the check and the delete.
        job = Job.objects.select_for_update().filter(pk=job_id).exclude(status=PROCESSING).first()
        if job is None:
            current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
            if current is None:
                raise TransitionRefused(f"job {job_id} does not exist", current=None)
            raise TransitionRefused(
                f"cannot delete a {current} job: cancel it first", current=current
            )
        if job.has_dependents:
            mark_deleted([(job.pk, job.status)])
        Job.objects.filter(pk=job.pk).delete()
        if job.has_dependents and job.status in (QUEUED, WAITING):
            parents_ended(ids=[job.pk], now=timezone.now())
    log_transition(job, "delete")
    return job


def requeue_changes(now: datetime) -> dict[str, Any]:
    """The changes that put a finished job back in the queue, due at once."""
    return {
        "status": QUEUED,
        "max_attempts": Greatest(F("max_attempts"), F("attempts") + 1),
        "run_after": None,
        "worker_id": None,
        "lease_expires_at": None,
        "finished_at": None,
        "updated_at": now,
    }
