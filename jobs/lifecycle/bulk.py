"""Set-based operator verbs, the admin's actions: ``cancel_many``, ``retry_many``,
``run_next_many`` and ``delete_many``.

Each is one guarded UPDATE (or DELETE) over a selection of jobs and reports what it
changed and, by status, what it skipped (``BulkResult``). One log line per call,
not per job: a bulk verb may touch thousands.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from jobs.exceptions import TransitionRefused
from jobs.lifecycle.events import logger
from jobs.lifecycle.operator import requeue_changes, retry
from jobs.lifecycle.transitions import CANCELLED, PROCESSING, QUEUED, TRANSITIONS, archive
from jobs.models import ACTIVE_STATUSES, Job, Outcome


@dataclass(frozen=True)
class BulkResult:
    """What a set-based transition did: how many jobs changed, and the rest by status."""

    changed: int
    skipped: dict[str, int] = field(default_factory=dict)  # status found -> count


Selection = QuerySet | Iterable[Any]


def _selected(ids: Selection) -> QuerySet:
    """Jobs among ``ids``: a list of primary keys, or a queryset (used as a subquery)."""
    if isinstance(ids, QuerySet):
        return Job.objects.filter(pk__in=ids.values("pk"))
    return Job.objects.filter(pk__in=list(ids))


def _by_status(jobs: QuerySet) -> dict[str, int]:
    return dict(jobs.order_by().values_list("status").annotate(n=Count("pk")))


def _bulk(ids: Selection, verb: str, allowed: Iterable[str], **changes: Any) -> BulkResult:
    """Apply one guarded UPDATE to the selected jobs whose status is in ``allowed``."""
    allowed = frozenset(allowed)
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        changed = selected.filter(status__in=allowed).update(**changes)
    skipped = {status: n for status, n in found.items() if status not in allowed}
    logger.info("transition=%s changed=%s skipped=%s", verb, changed, skipped)
    return BulkResult(changed, skipped)


def cancel_many(*, ids: Selection) -> BulkResult:
    """Cancel the selected queued or processing jobs; report the others as skipped.

    Running attempts are archived as cancelled, as ``cancel`` does for one job.
    """
    now = timezone.now()
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        running = list(selected.select_for_update().filter(status=PROCESSING))
        ended = {"status": CANCELLED, "finished_at": now, "lease_expires_at": None}
        changed = selected.filter(status=QUEUED).update(**ended, updated_at=now)
        changed += Job.objects.filter(pk__in=[j.pk for j in running], status=PROCESSING).update(
            **ended, updated_at=now
        )
        archive(running, outcome=Outcome.CANCELLED, now=now, error="cancelled")
    skipped = {status: n for status, n in found.items() if status not in ACTIVE_STATUSES}
    logger.info("transition=cancel changed=%s skipped=%s", changed, skipped)
    return BulkResult(changed, skipped)


def retry_many(*, ids: Selection) -> BulkResult:
    """Requeue the selected failed, cancelled or done jobs to run as soon as possible."""
    try:
        with transaction.atomic():
            return _bulk(ids, "retry", TRANSITIONS["retry"][0], **requeue_changes(timezone.now()))
    except IntegrityError:
        # One would become a second unfinished holder of an idempotency key: requeue
        # them one by one, so only those are refused.
        changed, skipped = 0, Counter()
        for job_id in _selected(ids).values_list("pk", flat=True):
            try:
                retry(job_id=job_id)
                changed += 1
            except TransitionRefused as refused:
                skipped[refused.current or "deleted"] += 1
        return BulkResult(changed, dict(skipped))


def run_next_many(*, ids: Selection) -> BulkResult:
    """Move the selected queued jobs to the front: top priority, due now.

    The jobs stay queued; the next free worker on their queue claims them first.
    """
    return _bulk(ids, "run_next", {QUEUED}, priority=100, run_after=None, updated_at=timezone.now())


def delete_many(*, ids: Selection) -> BulkResult:
    """Delete the selected jobs that are not running (cancel those first)."""
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        doomed = selected.exclude(status=PROCESSING)
        # Lock them first, so none is claimed between being chosen and deleted.
        list(doomed.select_for_update().values_list("pk", flat=True))
        deleted = doomed.delete()[1].get(Job._meta.label, 0)
    skipped = {PROCESSING: found[PROCESSING]} if found.get(PROCESSING) else {}
    logger.info("transition=delete changed=%s skipped=%s", deleted, skipped)
    return BulkResult(deleted, skipped)


# -- logging ------------------------------------------------------------------------------
