"""Retention: delete finished jobs once they are old enough, in small batches.

Each status has its own age (``JOBS_RETAIN_DONE``, ``JOBS_RETAIN_FAILED``,
``JOBS_RETAIN_CANCELLED``), counted from ``finished_at``. Only finished jobs are
ever deleted; queued and processing ones are never touched. Each batch of at
most ``JOBS_PURGE_BATCH_SIZE`` jobs is selected, locked (skipping rows someone
else holds) and deleted with its attempt history in its own short transaction,
so a purge of millions of rows never holds a long lock and never stalls
workers. The built-in ``jobs.purge`` schedule runs ``purge()`` automatically;
``manage.py purgejobs`` runs it on demand.

The registry rows of workers that died without a clean exit (``kill -9``, a lost
host) are removed once their last heartbeat is older than
``JOBS_RETAIN_DEAD_WORKERS``, by every worker's housekeeping.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs.conf import conf
from jobs.models import (
    FINISHED_STATUSES,
    Dependency,
    Job,
    JobAttempt,
    ScheduleFire,
    Status,
    Worker,
    stale_after,
)

logger = logging.getLogger(__name__)

# Fire records only guard against firing a past time twice; a day is ample.
FIRE_RECORDS_KEPT = timedelta(days=1)


def retention_ages() -> dict[str, timedelta | None]:
    """Return the configured age per finished status (None: keep forever)."""
    return {
        Status.DONE: conf.RETAIN_DONE,
        Status.FAILED: conf.RETAIN_FAILED,
        Status.CANCELLED: conf.RETAIN_CANCELLED,
    }


def purge(
    *,
    statuses: Iterable[str] | None = None,
    older_than: timedelta | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete finished jobs past their retention age; return how many per status.

    ``older_than`` overrides the configured age of every status. With
    ``dry_run`` nothing is deleted and the counts say what would be. Raises
    ``ValueError`` for a status that is not finished.
    """
    now = now or timezone.now()
    batch_size = max(1, batch_size or conf.PURGE_BATCH_SIZE)
    ages = retention_ages()
    chosen = list(statuses) if statuses else list(FINISHED_STATUSES)
    if unknown := [s for s in chosen if s not in FINISHED_STATUSES]:
        raise ValueError(f"only finished jobs are purged, not {', '.join(unknown)}")
    counts: dict[str, int] = {}
    for status in chosen:
        age = older_than if older_than is not None else ages[status]
        if age is None:
            continue
        old = Job.objects.filter(status=status, finished_at__lt=now - age)
        # A parent stays while a dependent waits: its result goes into the dependent's
        # parent_results when the dependent's last parent ends.
        old = old.exclude(has_dependents=True, child_links__child__status=Status.WAITING)
        counts[status] = old.count() if dry_run else _delete_in_batches(old, batch_size)
    if not dry_run and not statuses and older_than is None:
        _purge_fire_records(now - FIRE_RECORDS_KEPT, batch_size)
    logger.info("purge dry_run=%s deleted=%s", dry_run, counts)
    return counts


def _delete_in_batches(old: QuerySet, batch_size: int) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            # Locked until commit, so no one can retry (requeue) these jobs meanwhile.
            ids = list(
                old.select_for_update(skip_locked=True)
                .order_by()
                .values_list("pk", flat=True)[:batch_size]
            )
            if ids:
                deleted += delete_locked(ids)
        if len(ids) < batch_size:
            return deleted


def delete_locked(ids: list[Any]) -> int:
    """Delete these jobs, locked by the caller, and what refers to them in one statement
    per table; return how many jobs went.

    ``QuerySet.delete()`` would load every row and delete in chunks of 100; the
    cascade is done here by hand instead (attempts go, fire records keep their
    fire time with a null job), then the jobs go in one raw DELETE.
    """
    if not ids:
        return 0
    JobAttempt.objects.filter(job_id__in=ids).delete()
    ScheduleFire.objects.filter(job_id__in=ids).update(job=None)
    Dependency.objects.filter(child_id__in=ids).delete()
    mark_deleted(Job.objects.filter(pk__in=ids, has_dependents=True).values_list("pk", "status"))
    return Job.objects.filter(pk__in=ids)._raw_delete(Job.objects.db)


def mark_deleted(parents: Iterable[tuple[Any, str]]) -> None:
    """Keep on their edges the status of workflow parents about to be deleted
    (``deleted`` for one that had not finished), for their dependents to read."""
    by_status: dict[str, list[Any]] = {}
    for pk, status in parents:
        final = status if status in FINISHED_STATUSES else "deleted"
        by_status.setdefault(final, []).append(pk)
    for final, pks in by_status.items():
        Dependency.objects.filter(parent_id__in=pks).update(parent_final=final)


def _purge_fire_records(cutoff: datetime, batch_size: int) -> None:
    while True:
        with transaction.atomic():
            ids = list(
                ScheduleFire.objects.filter(fire_at__lt=cutoff).values_list("pk", flat=True)[
                    :batch_size
                ]
            )
            ScheduleFire.objects.filter(pk__in=ids).delete()
        if len(ids) < batch_size:
            return


def purge_dead_workers(*, now: datetime | None = None) -> int:
    """Delete the registry rows of workers silent for longer than ``JOBS_RETAIN_DEAD_WORKERS``;
    return how many. Their jobs are not touched: recovery requeues those once leases expire."""
    age = conf.RETAIN_DEAD_WORKERS
    if age is None:
        return 0
    # Never sooner than a lease: a live worker beats at least that often.
    cutoff = (now or timezone.now()) - max(age, stale_after())
    deleted = Worker.objects.filter(last_heartbeat_at__lt=cutoff).delete()[0]
    if deleted:
        logger.info("purge dead_workers=%s", deleted)
    return deleted
