"""Claiming jobs and the holder's lease.

``claim`` is the workers' batch claim (one statement, in claim order);
``claim_for_run`` and ``claim_for_hand`` claim one job by id; ``heartbeat`` renews
the leases a holder still has, ``mark_started`` records when attempts began and
``release`` hands unfinished jobs back. Every write but the claims is fenced on
the holder's attempt (``transitions.held``). Finishing a job belongs to ``complete``.
"""

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, PositiveIntegerField, Q, When
from django.utils import timezone

from jobs import notify
from jobs import tasks as registry
from jobs.conf import conf
from jobs.lifecycle import flow
from jobs.lifecycle.events import log_claim, log_transition
from jobs.lifecycle.transitions import (
    MANUAL_HOLDER,
    PROCESSING,
    QUEUED,
    archive,
    held,
    refused,
)
from jobs.models import Job, Outcome


def claim(
    *,
    worker_id: str,
    queues: Sequence[str] | None = None,
    limit: int = 1,
    lease_seconds: float | None = None,
    tasks: Sequence[str] | None = None,
    starts: int | None = None,
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker_id``, in claim order.

    Without ``tasks`` (the built-in worker) external tasks are left out: remote
    workers run them, naming them in ``tasks``.

    One statement selects the due jobs in claim order and marks them processing:
    ``WITH due AS MATERIALIZED (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED])
    UPDATE ... WHERE id IN (SELECT * FROM due) RETURNING ...``. On PostgreSQL,
    rows another transaction has locked are skipped, never waited on; SQLite
    serialises writers (the project's SQLite settings open write transactions
    with BEGIN IMMEDIATE and a busy timeout).

    That statement leaves out paused or limited queues and jobs with a
    concurrency key; those are claimed within their limits (``flow``) first, and
    only when the flow state says there are any. ``starts`` is how many claimed
    jobs can start at once (idle executors): a rate-limited queue gives at most
    that many (None: ``limit``).

    A claimed job has no ``started_at`` until its attempt starts executing
    (``runner.execute``): with ``--batch`` it may first wait in an executor's hand.
    """
    called = time.monotonic()
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds or conf.LEASE_SECONDS)
    state = flow.state()
    claimed = _claim_controlled(state, queues, tasks, limit, starts, worker_id, lease, now)
    claimed += _claim_free(queues, tasks, limit - len(claimed), worker_id, lease, now)
    if len(claimed) < limit and state.read_at < called:
        # Short, on a cached state: flow control may have changed since (a queue
        # limited, keyed jobs queued). Look again before reporting the queues dry.
        fresh = flow.state(refresh=True)
        if (fresh.queues, fresh.keyed) != (state.queues, state.keyed):
            room, left = limit - len(claimed), _starts_left(starts, claimed)
            claimed += _claim_controlled(fresh, queues, tasks, room, left, worker_id, lease, now)
    # RETURNING keeps no order: restore the claim order.
    claimed.sort(key=lambda job: (-job.priority, job.run_after or job.created_at))
    log_claim(claimed, worker_id)
    return claimed


def _due(queues: Sequence[str] | None, tasks: Sequence[str] | None, now: datetime) -> Any:
    """The due jobs a claim may take: of ``tasks`` only (a remote worker's claim), else of
    every task but the external ones (the built-in worker's; with none declared, the
    statement is the same as without the filter)."""
    exclude = () if tasks is not None else registry.external_names()
    return Job.objects.claimable(queues=queues, now=now, tasks=tasks, exclude_tasks=exclude)


def _claim_free(
    queues: Sequence[str] | None,
    tasks: Sequence[str] | None,
    limit: int,
    worker_id: str,
    lease: datetime,
    now: datetime,
) -> list[Job]:
    """The plain claim statement (no flow control applies to the jobs it may take)."""
    if limit <= 0:
        return []
    due = flow.free_jobs(_due(queues, tasks, now)).values("pk")[:limit]
    with transaction.atomic():
        # Asked once connected: MySQL's answer depends on the server's version, which a
        # connection not yet open would look up over a temporary one of its own.
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        return _mark(due, worker_id, lease, now)


def _mark(due: Any, worker_id: str, lease: datetime, now: datetime) -> list[Job]:
    """Mark the jobs ``due`` (a query of ids; None: none) selects processing for
    ``worker_id``; return them."""
    if due is None:
        return []
    if not connection.features.can_return_rows_from_update:
        return _mark_then_read(due, worker_id, lease, now)
    fields = list(Job._meta.concrete_fields)
    adapt = connection.ops.adapt_datetimefield_value
    due_sql, due_params = due.query.sql_with_params()
    # On PostgreSQL "= ANY(ARRAY(...))" keeps the plan an index lookup per claimed id;
    # "IN (subquery)" may become a semi join over every queued row.
    in_due = (
        "= ANY(ARRAY(SELECT * FROM due))"
        if connection.vendor == "postgresql"
        else "IN (SELECT * FROM due)"
    )
    # Only identifiers from the model and ORM-compiled SQL go into the text; values
    # are parameters.
    # A materialised CTE selects (and locks) the rows once: a plain IN (subquery)
    # may be re-run by the planner and claim more than ``limit`` rows.
    sql = (
        f"WITH due AS MATERIALIZED ({due_sql}) "  # noqa: S608
        f"UPDATE {Job._meta.db_table} SET status = %s, worker_id = %s, "
        "lease_expires_at = %s, attempts = attempts + 1, started_at = NULL, "
        "finished_at = NULL, updated_at = %s "
        f"WHERE status = %s AND id {in_due} "
        f"RETURNING {', '.join(connection.ops.quote_name(f.column) for f in fields)}"
    )
    params = [PROCESSING, worker_id, adapt(lease), adapt(now), QUEUED]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*due_params, *params])
        rows = cursor.fetchall()
    columns = _columns(fields)
    return [_from_row(columns, row) for row in rows]


def _mark_then_read(due: Any, worker_id: str, lease: datetime, now: datetime) -> list[Job]:
    """``_mark`` where an UPDATE returns no rows (MariaDB, MySQL): select the ids (locking
    them, SKIP LOCKED, in the caller's transaction), mark those still queued, read them.

    The UPDATE is guarded on the status as everywhere: under READ COMMITTED InnoDB
    re-reads a row another transaction changed before matching it.
    """
    ids = [row["pk"] for row in due]
    if not ids:
        return []
    marked = Job.objects.filter(pk__in=ids, status=QUEUED).update(
        status=PROCESSING,
        worker_id=worker_id,
        lease_expires_at=lease,
        attempts=F("attempts") + 1,
        started_at=None,
        finished_at=None,
        updated_at=now,
    )
    if not marked:
        return []
    return list(
        Job.objects.filter(
            pk__in=ids, status=PROCESSING, worker_id=worker_id, lease_expires_at=lease
        ).order_by()
    )


def _claim_controlled(
    state: flow.State,
    queues: Sequence[str] | None,
    tasks: Sequence[str] | None,
    limit: int,
    starts: int | None,
    worker_id: str,
    lease: datetime,
    now: datetime,
) -> list[Job]:
    """Claim within flow control: each controlled queue the worker serves (in its own
    transaction, its row locked), then keyed jobs of the other queues."""
    claimed: list[Job] = []
    for queue in state.controlled(queues):
        if len(claimed) >= limit:
            return claimed
        left, room = _starts_left(starts, claimed), limit - len(claimed)
        with transaction.atomic():
            claimed += _claim_queue(queue.queue, tasks, room, left, state, worker_id, lease, now)
    if state.keyed and len(claimed) < limit:
        due = _due(queues, tasks, now).filter(concurrency_key__isnull=False)
        with transaction.atomic():
            room = limit - len(claimed)
            chosen, _ = _choose(flow.uncontrolled(due), room, None, state=state, now=now)
            claimed += _mark(chosen, worker_id, lease, now)
    return claimed


def _starts_left(starts: int | None, claimed: list[Job]) -> int | None:
    """Executors left to start rate-limited jobs at once (None: no bound)."""
    if starts is None:
        return None
    return starts - sum(hasattr(job, "rate_slots") for job in claimed)


def _claim_queue(
    name: str,
    tasks: Sequence[str] | None,
    limit: int,
    starts: int | None,
    state: flow.State,
    worker_id: str,
    lease: datetime,
    now: datetime,
) -> list[Job]:
    """Claim from one controlled queue, its row locked (in the caller's transaction)."""
    queue = flow.lock_queue(name)
    if queue.paused:
        return []
    if queue.concurrency:
        limit = min(limit, queue.concurrency - flow.processing(queue=name))
    slots: list[Any] = []
    if queue.rate or queue.key_rate:  # only as many as can start at once
        limit = min(limit, limit if starts is None else starts)
    if (rate := queue.rate_limit) is not None and limit > 0:
        slots = flow.free_slots(flow.queue_limiter(name), rate, limit, now)
        limit = len(slots)
    if limit <= 0:
        return []
    due = _due([name], tasks, now)
    chosen, key_slots = _choose(due, limit, queue, state=state, now=now)
    jobs = _mark(chosen, worker_id, lease, now)
    taken = {}
    for job in jobs:  # a slot for each job claimed; the others stay free
        own = [slots.pop()] if rate is not None else []
        if own := own + key_slots.get(job.pk, []):
            taken[job] = own
    if taken:
        flow.stamp_slots(taken, now)  # the executor stamps them again as it starts
    return jobs


def _choose(
    due: Any, limit: int, queue: flow.Limits | None, *, state: flow.State, now: datetime
) -> tuple[Any, dict[Any, list[Any]]]:
    """Up to ``limit`` ids of ``due`` (in claim order) that their keys' and tasks' limits
    allow, as a query of ids (None: none), and the key rate slot each chosen job takes.

    Only the keys and limited tasks of jobs that look claimable are locked (in one
    sorted pass), then their processing jobs counted again under the locks: those
    counts hold until the claim commits, whatever other workers do.
    """
    # With keyed jobs about, look past the ones held back (up to a window).
    size = max(4 * limit, 200) if state.keyed else limit
    rows = due.values_list("pk", "concurrency_key", "task")[:size]
    window = [(pk, flow.own_key(key, task), task) for pk, key, task in rows]
    key_slots: dict[Any, list[Any]] = {}
    keys = {key for _, key, _ in window if key}
    limited = {task for _, _, task in window if task in state.tasks}
    if keys or limited:
        seen = flow.processing_by_key(keys), flow.processing_by_task(limited)
        window = _pick(window, limit, seen, queue, state.tasks)
        locked = flow.lock_keys(
            {key for _, key, _ in window if key}, {task for _, _, task in window} & limited
        )
        window = _pick(window, limit, locked, queue, state.tasks)
        if queue is not None and (key_rate := queue.key_rate_limit) is not None:
            window, key_slots = _take_key_slots(window, queue.queue, key_rate, now)
    chosen = [pk for pk, _, _ in window[:limit]]
    return (Job.objects.filter(pk__in=chosen).values("pk") if chosen else None), key_slots


def _take_key_slots(
    window: list[Any], queue: str, rate: tuple[int, float], now: datetime
) -> tuple[list[Any], dict[Any, list[Any]]]:
    """The rows of ``window`` whose key has a free rate slot, and the slot of each."""
    wanted: dict[str, list[Any]] = {}
    for pk, key, _ in window:
        if key:
            wanted.setdefault(key, []).append(pk)
    slots = {
        key: flow.free_slots(flow.key_limiter(queue, key), rate, len(pks), now)
        for key, pks in sorted(wanted.items())
    }
    taken = {
        pk: [slot] for key, pks in wanted.items() for pk, slot in zip(pks, slots[key], strict=False)
    }
    return [row for row in window if not row[1] or row[0] in taken], taken


def _pick(
    window: list[Any],
    limit: int,
    busy: tuple[dict[str, int], dict[str, int]],
    queue: Any,
    task_limits: dict[str, int],
) -> list[Any]:
    """The first ``limit`` rows of ``window`` whose key and task (if limited) have room,
    given ``busy``: how many jobs each key and each task has processing."""
    keys, tasks = dict(busy[0]), dict(busy[1])
    picked = []
    for row in window:
        if len(picked) >= limit:
            break
        _, key, task = row
        if key and keys[key] >= flow.key_limit(task, queue):
            continue
        if task in task_limits and tasks[task] >= task_limits[task]:
            continue
        if key:
            keys[key] += 1
        if task in task_limits:
            tasks[task] += 1
        picked.append(row)
    return picked


def _from_row(columns: list[tuple[Any, list[Any]]], row: Sequence[Any]) -> Job:
    """Build a Job from raw column values, converted as the ORM would convert them."""
    values = []
    for (col, converters), value in zip(columns, row, strict=True):
        for converter in converters:
            value = converter(value, col, connection)
        values.append(value)
    return Job.from_db(connection.alias, [col.target.attname for col, _ in columns], values)


def _columns(fields: list[Any]) -> list[tuple[Any, list[Any]]]:
    """Each field's column expression and its database-to-Python converters."""
    table = Job._meta.db_table
    columns = []
    for model_field in fields:
        col = model_field.get_col(table)
        converters = connection.ops.get_db_converters(col)
        columns.append((col, converters + model_field.get_db_converters(connection)))
    return columns


def claim_for_run(*, job_id: Any, worker_id: str) -> Job:
    """Claim one job to run it now: a queued job (due or not), or one held by hand.

    Raises ``TransitionRefused`` when a worker holds it or it has finished.
    """
    return _claim_one(job_id, worker_id, take_manual=True)


def _claim_one(job_id: Any, worker_id: str, *, take_manual: bool) -> Job:
    """Claim one queued job (due or not) for ``worker_id``; with ``take_manual``, also
    one held by hand. Raises ``TransitionRefused``."""
    now = timezone.now()
    sources = Q(status=QUEUED)
    if take_manual:
        sources |= Q(status=PROCESSING, worker_id=MANUAL_HOLDER)
    updated = Job.objects.filter(sources, pk=job_id).update(
        # A job claimed by hand already counted its attempt.
        attempts=Case(
            When(status=QUEUED, then=F("attempts") + 1),
            default=F("attempts"),
            output_field=PositiveIntegerField(),
        ),
        status=PROCESSING,
        worker_id=worker_id,
        lease_expires_at=now + timedelta(seconds=conf.LEASE_SECONDS),
        started_at=now,
        updated_at=now,
    )
    if not updated:
        raise refused(job_id, "claim")
    job = Job.objects.get(pk=job_id)
    log_transition(job, "claim")
    return job


def claim_for_hand(*, job_id: Any) -> Job:
    """Mark a queued job processing by hand (held by ``manual`` under a normal lease)."""
    return _claim_one(job_id, MANUAL_HOLDER, take_manual=False)


def release(
    *, jobs: Iterable[Job], worker_id: str, started: bool = False, reason: str = "released"
) -> int:
    """Hand claimed jobs back to the queue unfinished; return how many were released.

    A job that never ``started`` gets its attempt back. A started one keeps it, so
    attempt numbers only grow and keep fencing out the holder that let it go, and
    the attempt goes into its history (outcome ``released``, ``reason`` as its error).
    Idle workers are woken (PostgreSQL NOTIFY at commit), as for a new job.
    """
    now = timezone.now()
    back = []
    with transaction.atomic():
        for job in jobs:
            if held(job, worker_id).update(
                status=QUEUED,
                worker_id=None,
                lease_expires_at=None,
                attempts=F("attempts") - (0 if started else 1),
                updated_at=now,
            ):
                back.append(job)
        if back:
            if started:
                # The rows' own start times: the caller's copy may predate mark_started.
                starts = dict(
                    Job.objects.filter(pk__in=[j.pk for j in back]).values_list("pk", "started_at")
                )
                for job in back:
                    job.started_at = starts.get(job.pk, job.started_at)
                archive(back, outcome=Outcome.RELEASED, now=now, error=reason)
            notify.notify(job.queue for job in back)
    for job in back:
        job.status, job.worker_id, job.lease_expires_at = QUEUED, None, None
        job.attempts -= 0 if started else 1
        log_transition(job, "release")
    return len(back)


def heartbeat(*, worker_id: str, jobs: Sequence[Job]) -> set[tuple[Any, int]]:
    """Extend the lease of the jobs ``worker_id`` still holds.

    Return ``(id, attempt)`` of each attempt it still holds: one of ``jobs``
    whose pair is missing was taken away (cancelled, recovered, moved by hand,
    deleted, or claimed again as a later attempt).
    """
    if not jobs:
        return set()
    lease = timezone.now() + timedelta(seconds=conf.LEASE_SECONDS)
    held = Job.objects.filter(
        pk__in=[job.pk for job in jobs], status=PROCESSING, worker_id=worker_id
    )
    held.update(lease_expires_at=lease)
    return set(held.values_list("pk", "attempts"))


def mark_started(*, worker_id: str, starts: Sequence[tuple[Job, datetime]]) -> int:
    """Record when attempts ``worker_id`` holds started; return how many it still held.

    ``starts`` pairs each job with its start. For attempts still running: a
    quicker one's start is recorded with its outcome. Not a status change; fenced
    like the holder's transitions.
    """
    now = timezone.now()
    with transaction.atomic():
        return sum(
            held(job, worker_id).update(started_at=started_at, updated_at=now)
            for job, started_at in starts
        )
