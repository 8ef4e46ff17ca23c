"""Recovering jobs whose holder died.

``recover`` requeues (or fails, out of attempts) processing jobs whose lease
expired and archives their attempts as lost; the workers' supervisors call it
periodically. It must not touch a job whose lease is still live. Idle workers are
woken (PostgreSQL NOTIFY at commit), as for a new job.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs import notify
from jobs.lifecycle.dependents import parents_ended
from jobs.lifecycle.events import log_transition
from jobs.lifecycle.transitions import FAILED, QUEUED, archive, held
from jobs.models import Job, Outcome


def recover(*, now: datetime | None = None, limit: int = 500) -> int:
    """Requeue (or fail, when out of attempts) processing jobs whose lease expired.

    Return how many were recovered.
    """
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            Job.objects.lease_expired(now=now).select_for_update(skip_locked=True)[:limit]
        )
        recovered = []
        for job in expired:
            requeue = job.attempts < job.max_attempts
            changes: dict[str, Any] = {
                "error": "worker lost",
                "error_class": "worker lost",
                "traceback": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if requeue:
                changes |= {"status": QUEUED, "worker_id": None, "run_after": None}
            else:
                changes |= {"status": FAILED, "finished_at": now}
            if held(job, job.worker_id).update(**changes):
                recovered.append(job)
                job.status = changes["status"]
        archive(recovered, outcome=Outcome.LOST, now=now, error="worker lost")
        if recovered:  # requeued jobs are work to claim; a slot a limit counted is free
            notify.notify(job.queue for job in recovered)
        if ended := [j.pk for j in recovered if j.status == FAILED and j.has_dependents]:
            parents_ended(ids=ended, now=now)
    for job in recovered:
        log_transition(job, "recover", outcome=Outcome.LOST.value)
    return len(recovered)
