"""The state machine's tables and the guards every transition shares.

Owns ``TRANSITIONS`` (every edge) and ``MANUAL_TRANSITIONS`` (the status edits an
operator may ask for), the backoff policy, holder ids, the fence on a holder's
attempt (``held``), the refusal that says why a transition did not happen
(``refused``) and the attempt history (``archive``). The bottom of the package:
it imports no other lifecycle module and moves no job itself.
"""

import random
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from jobs.conf import conf
from jobs.exceptions import TransitionRefused
from jobs.models import Job, JobAttempt, Status

QUEUED, PROCESSING, DONE = Status.QUEUED, Status.PROCESSING, Status.DONE
FAILED, CANCELLED, WAITING = Status.FAILED, Status.CANCELLED, Status.WAITING

# verb -> (statuses it starts from, statuses it may end in)
TRANSITIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "enqueue": (frozenset(), frozenset({QUEUED, WAITING})),  # waiting: a workflow's dependent
    "claim": (frozenset({QUEUED}), frozenset({PROCESSING})),
    "succeed": (frozenset({PROCESSING}), frozenset({DONE})),
    "fail": (frozenset({PROCESSING}), frozenset({QUEUED, FAILED})),
    "recover": (frozenset({PROCESSING}), frozenset({QUEUED, FAILED})),
    "release": (frozenset({PROCESSING}), frozenset({QUEUED})),
    "cancel": (frozenset({QUEUED, PROCESSING, WAITING}), frozenset({CANCELLED})),
    "retry": (frozenset({FAILED, CANCELLED, DONE}), frozenset({QUEUED, WAITING})),
    # A dependent's last parent ended (dependents.parents_ended): it runs, or it is
    # cancelled when a parent ended other than done under the edge's "cancel" policy.
    "ready": (frozenset({WAITING}), frozenset({QUEUED, CANCELLED})),
    # The parent that cancelled it was retried (dependents.reopen): it waits again.
    "reopen": (frozenset({CANCELLED}), frozenset({WAITING})),
}

# set_status(current -> requested): the lifecycle verb that performs it.
MANUAL_TRANSITIONS: dict[tuple[str, str], str] = {
    (QUEUED, PROCESSING): "claim",
    (QUEUED, CANCELLED): "cancel",
    (WAITING, CANCELLED): "cancel",
    (PROCESSING, QUEUED): "release",
    (PROCESSING, DONE): "succeed",
    (PROCESSING, FAILED): "fail",
    (PROCESSING, CANCELLED): "cancel",
    (DONE, QUEUED): "retry",
    (FAILED, QUEUED): "retry",
    (CANCELLED, QUEUED): "retry",
}

# The holder of a job claimed by hand (``claim_for_hand``, a manual edit to processing).
MANUAL_HOLDER = "manual"


# "ValueError: ..." or "pkg.mod.Error: ...": the runner's "<class>: <message>".
ERROR_CLASS = re.compile(r"[A-Za-z_][\w.]*")
ERROR_KEY_LENGTH = 200


def error_key(error: str | None) -> str | None:
    """The cause of a failure, to group failures by: the exception's class name in
    ``"<class>: <message>"``, else the error's first line (a timeout's without its
    seconds, so all timeouts group together)."""
    if error is None:
        return None
    head, colon, _ = error.partition(":")
    if colon and ERROR_CLASS.fullmatch(head):
        return head[:ERROR_KEY_LENGTH]
    first = error.strip().partition("\n")[0]
    if first.startswith("timed out after"):
        return "timed out"
    return first[:ERROR_KEY_LENGTH]


def new_worker_id(prefix: str) -> str:
    """Return a holder id unique to this process start (or this one-off run)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def backoff(attempt: int, *, base: float | None = None, cap: float | None = None) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt``.

    Exponential with equal jitter: with d = min(cap, base * 2**(attempt-1)), uniform in
    [d/2, d]. Jitter spreads a burst of failures apart; the fixed half means a retry never
    fires straight after the failure it follows.
    """
    base = conf.BACKOFF_BASE if base is None else base
    cap = conf.BACKOFF_MAX if cap is None else cap
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(delay / 2, delay)  # noqa: S311


def refused(job_id: Any, verb: str) -> TransitionRefused:
    """The error for a ``verb`` that updated no row: says what the job is now, if anything."""
    current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if current is None:
        return TransitionRefused(f"job {job_id} does not exist", current=None)
    allowed = ", ".join(sorted(TRANSITIONS[verb][0]))
    return TransitionRefused(
        f"cannot {verb} a {current} job (allowed from: {allowed})", current=current
    )


def held(job: Job, worker_id: str) -> QuerySet:
    """The job's row while ``worker_id`` still holds this attempt of it (else no row).

    The fence of every holder's write: a holder that lost its lease, or whose job was
    claimed again as a later attempt, updates nothing.
    """
    return Job.objects.filter(
        pk=job.pk, status=PROCESSING, worker_id=worker_id, attempts=job.attempts
    )


def archive(
    jobs: Sequence[Job],
    *,
    outcome: str,
    now: datetime,
    error: str | None,
    traceback: str | None = None,
) -> None:
    """Record the ended attempts of ``jobs`` (as they were while held) in their history."""
    JobAttempt.objects.bulk_create(
        JobAttempt(
            job_id=job.pk,
            number=job.attempts,
            worker_id=job.worker_id,
            started_at=job.started_at,
            finished_at=now,
            outcome=outcome,
            error=error,
            traceback=traceback,
        )
        for job in jobs
    )
