"""Set-based operator verbs, the admin's actions: ``cancel_many``, ``retry_many``,
``run_next_many`` and ``delete_many``; and ``apply_to_all``, one of them over every
job a filter matches, a batch at a time.

Each verb is one guarded UPDATE (or DELETE) over a selection of jobs and reports what
it changed and, by status, what it skipped (``BulkResult``). One log line per call,
not per job: a bulk verb may touch thousands.

``apply_to_all`` serves "retry everything that failed with this error": however many
jobs match, each batch of at most ``JOBS_MAX_BULK`` is chosen and locked in its own
short transaction (``FOR UPDATE SKIP LOCKED`` where the database has it, as retention
does), so workers are never stalled behind it, and rows someone else holds at that
instant are left alone rather than waited for. A running job is cancelled as
``cancel`` does (its holder finds out at its next heartbeat), never deleted.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from jobs.conf import conf
from jobs.exceptions import TransitionRefused
from jobs.lifecycle.complete import again_on_conflict, rerun_on_conflict
from jobs.lifecycle.dependents import parents_ended, retried
from jobs.lifecycle.events import logger
from jobs.lifecycle.operator import requeue_changes, retry
from jobs.lifecycle.transitions import (
    CANCELLED,
    PROCESSING,
    QUEUED,
    TRANSITIONS,
    WAITING,
    archive,
)
from jobs.models import ACTIVE_STATUSES, Job, Outcome, Status
from jobs.retention import delete_locked


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


def _bulk(
    ids: Selection, verb: str, allowed: Iterable[str], after: Any = None, **changes: Any
) -> BulkResult:
    """Apply one guarded UPDATE to the selected jobs whose status is in ``allowed``;
    ``after(ids)``, in the same transaction, for those among them that are in a workflow."""
    allowed = frozenset(allowed)
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        chosen = selected.filter(status__in=allowed)
        members = []
        if after is not None:
            members = list(chosen.filter(workflow__isnull=False).values_list("pk", flat=True))
        changed = chosen.update(**changes)
        if members:
            after(members)
    skipped = {status: n for status, n in found.items() if status not in allowed}
    logger.info("transition=%s changed=%s skipped=%s", verb, changed, skipped)
    return BulkResult(changed, skipped)


@rerun_on_conflict
def cancel_many(*, ids: Selection) -> BulkResult:
    """Cancel the selected queued or processing jobs; report the others as skipped.

    Running attempts are archived as cancelled, as ``cancel`` does for one job.
    """
    now = timezone.now()
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        running = list(selected.select_for_update().filter(status=PROCESSING))
        parents = list(
            selected.filter(status__in=[QUEUED, WAITING], has_dependents=True).values_list(
                "pk", flat=True
            )
        )
        ended = {"status": CANCELLED, "finished_at": now, "lease_expires_at": None}
        changed = selected.filter(status__in=[QUEUED, WAITING]).update(**ended, updated_at=now)
        changed += Job.objects.filter(pk__in=[j.pk for j in running], status=PROCESSING).update(
            **ended, updated_at=now
        )
        archive(running, outcome=Outcome.CANCELLED, now=now, error="cancelled")
        parents += [j.pk for j in running if j.has_dependents]
        if parents:
            parents_ended(ids=parents, now=now)
    skipped = {status: n for status, n in found.items() if status not in ACTIVE_STATUSES}
    logger.info("transition=cancel changed=%s skipped=%s", changed, skipped)
    return BulkResult(changed, skipped)


@rerun_on_conflict
def retry_many(*, ids: Selection) -> BulkResult:
    """Requeue the selected failed, cancelled or done jobs to run as soon as possible."""
    try:
        now = timezone.now()
        with transaction.atomic():
            return _bulk(
                ids,
                "retry",
                TRANSITIONS["retry"][0],
                after=lambda members: retried(ids=members, now=now),
                **requeue_changes(now),
            )
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


@rerun_on_conflict
def run_next_many(*, ids: Selection) -> BulkResult:
    """Move the selected queued jobs to the front: top priority, due now.

    The jobs stay queued; the next free worker on their queue claims them first.
    """
    return _bulk(ids, "run_next", {QUEUED}, priority=100, run_after=None, updated_at=timezone.now())


@rerun_on_conflict
def delete_many(*, ids: Selection) -> BulkResult:
    """Delete the selected jobs that are not running (cancel those first)."""
    with transaction.atomic():
        selected = _selected(ids)
        found = _by_status(selected)
        doomed = selected.exclude(status=PROCESSING)
        # Lock them first, so none is claimed between being chosen and deleted.
        locked = list(doomed.select_for_update().values_list("pk", "status", "has_dependents"))
        deleted = delete_locked([pk for pk, _, _ in locked])
        unfinished = (QUEUED, WAITING)
        if parents := [pk for pk, status, has in locked if has and status in unfinished]:
            parents_ended(ids=parents, now=timezone.now())
    skipped = {PROCESSING: found[PROCESSING]} if found.get(PROCESSING) else {}
    logger.info("transition=delete changed=%s skipped=%s", deleted, skipped)
    return BulkResult(deleted, skipped)


# verb -> (the set-based verb, the statuses it changes)
VERBS: dict[str, tuple[Any, frozenset[str]]] = {
    "retry": (retry_many, TRANSITIONS["retry"][0]),
    "cancel": (cancel_many, frozenset(ACTIVE_STATUSES)),
    "run_next": (run_next_many, frozenset({QUEUED})),
    "delete": (delete_many, frozenset(Status.values) - {PROCESSING}),
}


@dataclass(frozen=True)
class BatchedResult(BulkResult):
    """``BulkResult`` of ``apply_to_all``, and how many batches it took."""

    batches: int = 0


def apply_to_all(*, verb: str, jobs: QuerySet, batch_size: int | None = None) -> BatchedResult:
    """Apply ``verb`` (a key of ``VERBS``) to every job ``jobs`` matches, in batches.

    Jobs in a status the verb does not change are counted as skipped, by status, as
    the verb alone reports them. Raises ``ValueError`` for an unknown verb.
    """
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}: one of {', '.join(VERBS)}")
    many, allowed = VERBS[verb]
    batch_size = max(1, batch_size or conf.MAX_BULK)
    jobs = jobs.order_by()
    skipped = {s: n for s, n in _by_status(jobs).items() if s not in allowed}
    todo = jobs.filter(status__in=allowed)
    if verb == "run_next":  # those already at the front would match for ever
        todo = todo.exclude(priority=100, run_after__isnull=True)
    changed = batches = 0
    refused: set[Any] = set()  # jobs the verb left as they were (a retry's taken key)
    lock = connection.features.has_select_for_update_skip_locked

    def batch() -> tuple[list[Any], BulkResult | None]:
        with transaction.atomic():
            rest = todo.exclude(pk__in=refused) if refused else todo
            chosen = rest.select_for_update(skip_locked=True) if lock else rest
            ids = list(chosen.values_list("pk", flat=True)[:batch_size])
            return ids, many(ids=ids) if ids else None

    while True:
        ids, result = again_on_conflict(batch)
        if result is not None:
            changed += result.changed
            batches += 1
            if result.changed < len(ids):  # never choose those again
                refused.update(todo.filter(pk__in=ids).values_list("pk", flat=True))
            for status, n in result.skipped.items():
                skipped[status] = skipped.get(status, 0) + n
        if len(ids) < batch_size:
            break
    logger.info(
        "transition=%s_all changed=%s skipped=%s batches=%s", verb, changed, skipped, batches
    )
    return BatchedResult(changed, skipped, batches)
