"""Finishing an attempt, as its holder: ``succeed``, ``succeed_many``, ``fail`` (requeued
with backoff while attempts remain, else the failure queue) and ``report_progress``.

Every write is fenced on the holder's attempt, so a holder that lost its lease
changes nothing. Operators finish jobs through ``operator``, which calls these.
"""

import functools
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from jobs.exceptions import lock_conflict
from jobs.lifecycle import flow
from jobs.lifecycle.dependents import parents_ended
from jobs.lifecycle.events import attempt_duration, log_transition, logger
from jobs.lifecycle.transitions import (
    DONE,
    FAILED,
    PROCESSING,
    QUEUED,
    archive,
    backoff,
    error_key,
    held,
    refused,
)
from jobs.models import Job, Outcome


def succeed(*, job: Job, worker_id: str, result: Any = None) -> None:
    """Record success of the attempt ``job`` describes. Raises ``TransitionRefused``."""
    now = timezone.now()
    # A job with dependents settles them in the same transaction; others need none.
    with transaction.atomic() if job.has_dependents else nullcontext():
        if not _mark_done(job, worker_id, result, now):
            raise refused(job.pk, "succeed")
        if job.has_dependents:
            parents_ended(ids=[job.pk], now=now)
    job.result = result
    log_transition(job, "succeed", outcome="done", duration=attempt_duration(job, now))


def _started(job: Job) -> dict[str, Any]:
    """The attempt's start to record with its outcome, when the caller knows it."""
    return {"started_at": job.started_at} if job.started_at is not None else {}


def _mark_done(job: Job, worker_id: str, result: Any, now: datetime) -> bool:
    updated = held(job, worker_id).update(
        status=DONE,
        result=result,
        error=None,
        error_class=None,
        traceback=None,
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
        **_started(job),
    )
    if updated:
        job.status, job.finished_at = DONE, now
        flow.announce_freed([job])
    return bool(updated)


def succeed_many(*, worker_id: str, completions: Sequence[tuple[Job, Any]]) -> int:
    """Record several successes in one transaction; return how many were still held.

    Each is fenced like ``succeed`` (on job, status, worker and attempt); one that
    was taken away meanwhile is skipped. On PostgreSQL one ``UPDATE ... FROM
    unnest(arrays)`` writes them all and returns the ids it recorded; on MariaDB/MySQL
    one ``UPDATE ... JOIN`` (``_done_joined``); on SQLite one statement is executed per
    job (it has no round trip to save).
    """
    if not completions:
        return 0
    now = timezone.now()
    fields = {f.name: f for f in Job._meta.concrete_fields}
    stamp = fields["finished_at"].get_db_prep_save(now, connection)
    ids = [fields["id"].get_db_prep_save(job.pk, connection) for job, _ in completions]
    results = [fields["result"].get_db_prep_save(result, connection) for _, result in completions]
    held = [job for job, _ in completions]
    attempts = [job.attempts for job, _ in completions]
    # When each attempt started (unknown: keep what the row has). Adapted directly:
    # these are aware datetimes or None, and this runs once per job.
    adapt = connection.ops.adapt_datetimefield_value
    starts = [adapt(job.started_at) for job in held]
    table = connection.ops.quote_name(Job._meta.db_table)
    done = "status = %s, error = NULL, error_class = NULL, traceback = NULL, finished_at = %s, "
    done += "lease_expires_at = NULL, updated_at = %s"

    def write() -> set[Any] | None:
        """The ids recorded (None: all of them), in one transaction."""
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"UPDATE {table} SET {done}, result = v.result, "  # noqa: S608
                    f"started_at = COALESCE(v.started_at, {table}.started_at) "
                    "FROM unnest(%s::uuid[], %s::integer[], %s::jsonb[], %s::timestamptz[]) "
                    "AS v(id, attempts, result, started_at) "
                    f"WHERE {table}.id = v.id AND {table}.attempts = v.attempts "
                    f"AND {table}.status = %s AND {table}.worker_id = %s RETURNING {table}.id",
                    [DONE, stamp, stamp, ids, attempts, results, starts, PROCESSING, worker_id],
                )
                mine = {pk for (pk,) in cursor.fetchall()}
                recorded = len(mine)
            elif connection.vendor == "mysql":
                values = sorted(zip(ids, attempts, results, starts, strict=True))
                fence = [DONE, stamp, stamp, PROCESSING, worker_id]
                recorded = _done_joined(cursor, table, done, values, fence)
                mine = None
            else:
                cursor.executemany(
                    f"UPDATE {table} SET {done}, result = %s, "  # noqa: S608
                    "started_at = COALESCE(%s, started_at) "
                    "WHERE id = %s AND attempts = %s AND status = %s AND worker_id = %s",
                    # In id order: concurrent groups lock their rows in one order.
                    sorted(
                        (
                            (DONE, stamp, stamp, result, start, pk, attempt, PROCESSING, worker_id)
                            for pk, attempt, result, start in zip(
                                ids, attempts, results, starts, strict=True
                            )
                        ),
                        key=lambda row: row[5],
                    ),
                )
                recorded = cursor.rowcount
                mine = None
            flow.announce_freed(held)
            if recorded < len(held) and mine is None:
                # Some were taken away meanwhile: keep only those this worker recorded.
                mine = set(
                    Job.objects.filter(
                        pk__in=[job.pk for job in held], status=DONE, finished_at=now
                    ).values_list("pk", flat=True)
                )
            if parents := [
                j.pk for j in held if j.has_dependents and (mine is None or j.pk in mine)
            ]:
                parents_ended(ids=parents, now=now)  # set-based, for the whole batch
        return mine

    mine = again_on_conflict(write)
    if mine is not None and len(mine) < len(held):
        logger.warning(
            "worker=%s discarded=%s completions no longer held", worker_id, len(held) - len(mine)
        )
        held = [job for job in held if job.pk in mine]
    for job in held:
        job.status, job.finished_at = DONE, now
        log_transition(job, "succeed", outcome="done", duration=attempt_duration(job, now))
    return len(held)


def _done_joined(cursor: Any, table: str, done: str, values: list[tuple], params: list) -> int:
    """MariaDB/MySQL: record a group of successes in one ``UPDATE`` joined to a derived
    table of their values (id, attempt, result, start; in id order), fenced as each
    single one is; return how many rows it matched. One round trip instead of one a job
    (an UPDATE returns no rows there, so the caller reads which ones it recorded).
    ``params``: those of ``done``, then the status and worker the rows must have."""
    # MariaDB's UUID type: the ids as UUIDs, so the join looks each one up by key.
    uuid = "CAST(%s AS UUID)" if connection.features.has_native_uuid_field else "%s"
    first = f"SELECT {uuid} AS id, %s AS attempts, %s AS result, %s AS started_at"
    rows = " UNION ALL ".join([first] + [f"SELECT {uuid}, %s, %s, %s"] * (len(values) - 1))
    cursor.execute(
        f"UPDATE {table} JOIN ({rows}) AS v "  # noqa: S608 - identifiers and placeholders
        f"ON {table}.id = v.id AND {table}.attempts = v.attempts SET {done}, "
        f"{table}.result = v.result, "
        f"{table}.started_at = COALESCE(v.started_at, {table}.started_at) "
        f"WHERE {table}.status = %s AND {table}.worker_id = %s",
        [value for row in values for value in row] + params,
    )
    return cursor.rowcount


def again_on_conflict(write: Any, tries: int = 5) -> Any:
    """Run ``write`` (one transaction) and return its answer; run it again when the
    database rolled it back for a conflict (``lock_conflict``: an InnoDB deadlock with a
    concurrent claim). Not inside a caller's transaction: that one is lost already."""
    for attempt in range(1, tries + 1):
        try:
            return write()
        except DatabaseError as exc:
            if attempt == tries or connection.in_atomic_block or not lock_conflict(exc):
                raise
            logger.info("transaction conflict, attempt=%s: %s", attempt, exc)
    raise AssertionError("unreachable")


def rerun_on_conflict[F: Callable[..., Any]](verb: F) -> F:
    """``verb``, whose writes are one transaction, run through ``again_on_conflict``:
    called inside a caller's transaction, it is the caller's that runs again."""

    @functools.wraps(verb)
    def run(*args: Any, **kwargs: Any) -> Any:
        return again_on_conflict(lambda: verb(*args, **kwargs))

    return run  # type: ignore[return-value]


def fail(
    *,
    job: Job,
    worker_id: str,
    error: str,
    traceback: str | None = None,
    retry: bool = True,
    outcome: str = Outcome.FAILED,
) -> str:
    """Record a failed attempt: requeue with backoff if attempts remain, else fail.

    Return the new status. Raises ``TransitionRefused`` if ``worker_id`` no longer
    holds this attempt.
    """
    now = timezone.now()
    requeue = retry and job.attempts < job.max_attempts
    with transaction.atomic():
        changes: dict[str, Any] = {
            "error": error,
            "error_class": error_key(error),
            "traceback": traceback,
            "lease_expires_at": None,
            "updated_at": now,
            **_started(job),
        }
        if requeue:
            run_after = now + timedelta(seconds=backoff(job.attempts))
            changes |= {"status": QUEUED, "run_after": run_after, "worker_id": None}
        else:
            changes |= {"status": FAILED, "finished_at": now}
        if not held(job, worker_id).update(**changes):
            raise refused(job.pk, "fail")
        flow.announce_freed([job])
        archive([job], outcome=outcome, now=now, error=error, traceback=traceback)
        if not requeue and job.has_dependents:
            parents_ended(ids=[job.pk], now=now)
    job.status = changes["status"]
    log_transition(
        job, "fail", outcome=str(outcome), error=error, duration=attempt_duration(job, now)
    )
    return job.status


def report_progress(*, job: Job, worker_id: str, percent: int, message: str = "") -> bool:
    """Record the progress of the attempt ``worker_id`` holds; return whether it still holds it.

    Not a status change: one UPDATE fenced like the holder's transitions, so a
    stale holder cannot write over the attempt that replaced it.
    """
    return bool(held(job, worker_id).update(progress=percent, progress_message=message[:500]))
