"""The job state machine: the only code that writes ``Job.status``.

A job is created ``queued``. A worker *claims* it (``processing``): the claim
counts an attempt, names the holder in ``worker_id`` and grants a lease until
``lease_expires_at``, which the holder renews while the task runs. The holder
then reports success (``done``) or failure: with attempts left the job goes
back to ``queued`` with ``run_after`` set by the backoff policy, otherwise it
lands in ``failed``, the failure queue, where it stays until an operator
retries it. A queued or processing job can be cancelled at any time. A
processing job whose lease expired is *recovered*: its holder is presumed dead,
the attempt is archived as lost, and the job is requeued or failed.

Every transition is one guarded UPDATE (compare-and-set) on the expected
status; a worker's own transitions are also fenced on ``worker_id`` and the
attempt number, so a worker that wakes up after losing its lease cannot
overwrite the attempt that replaced it. Zero rows updated raises
``TransitionRefused``: someone else moved the job first.

``TRANSITIONS`` lists every edge; ``MANUAL_TRANSITIONS`` the edits an operator
or API client may request with ``set_status``.
"""

import json
import logging
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, PositiveIntegerField, Q, QuerySet, When
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs import notify, tasks
from jobs.conf import conf
from jobs.exceptions import (
    InvalidJob,
    InvalidPayload,
    JobChanged,
    TransitionRefused,
    flatten_errors,
)
from jobs.models import ACTIVE_STATUSES, Job, JobAttempt, Outcome, ScheduleFire, Status
from jobs.observability import metrics

logger = logging.getLogger(__name__)

QUEUED, PROCESSING, DONE = Status.QUEUED, Status.PROCESSING, Status.DONE
FAILED, CANCELLED = Status.FAILED, Status.CANCELLED

# verb -> (statuses it starts from, statuses it may end in)
TRANSITIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "enqueue": (frozenset(), frozenset({QUEUED})),
    "claim": (frozenset({QUEUED}), frozenset({PROCESSING})),
    "succeed": (frozenset({PROCESSING}), frozenset({DONE})),
    "fail": (frozenset({PROCESSING}), frozenset({QUEUED, FAILED})),
    "recover": (frozenset({PROCESSING}), frozenset({QUEUED, FAILED})),
    "release": (frozenset({PROCESSING}), frozenset({QUEUED})),
    "cancel": (frozenset({QUEUED, PROCESSING}), frozenset({CANCELLED})),
    "retry": (frozenset({FAILED, CANCELLED, DONE}), frozenset({QUEUED})),
}

# set_status(current -> requested): the lifecycle verb that performs it.
MANUAL_TRANSITIONS: dict[tuple[str, str], str] = {
    (QUEUED, PROCESSING): "claim",
    (QUEUED, CANCELLED): "cancel",
    (PROCESSING, QUEUED): "release",
    (PROCESSING, DONE): "succeed",
    (PROCESSING, FAILED): "fail",
    (PROCESSING, CANCELLED): "cancel",
    (DONE, QUEUED): "retry",
    (FAILED, QUEUED): "retry",
    (CANCELLED, QUEUED): "retry",
}

MANUAL_HOLDER = "manual"
# The fields an operator may edit by hand (``edit``); the others belong to the state machine.
EDITABLE_FIELDS = ("payload", "queue", "priority", "run_after", "max_attempts", "timeout")
MAX_PAYLOAD_DEPTH = 100


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


def _refused(job_id: Any, verb: str) -> TransitionRefused:
    current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if current is None:
        return TransitionRefused(f"job {job_id} does not exist", current=None)
    allowed = ", ".join(sorted(TRANSITIONS[verb][0]))
    return TransitionRefused(
        f"cannot {verb} a {current} job (allowed from: {allowed})", current=current
    )


# -- enqueue -----------------------------------------------------------------------------


def enqueue(
    *,
    task: str = "simulate",
    payload: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Create a queued job; return ``(job, created)``.

    With an ``idempotency_key`` that an unfinished job already holds, return that
    job and ``created=False``. Raises ``UnknownTask`` or ``InvalidJob`` (see
    ``check_job``): nothing is created.
    """
    args = {"payload": payload, "queue": queue, "priority": priority, "run_after": run_after}
    args |= {"max_attempts": max_attempts, "timeout": timeout}
    spec = check_job(task=task, idempotency_key=idempotency_key, **args)
    job = _new_job(spec, args, conf.MAX_ATTEMPTS)
    job.idempotency_key = idempotency_key or None
    if not job.idempotency_key:
        _insert([job])
        _log_transition(job, "enqueue")
        return job, True
    for _ in range(3):
        try:
            _insert([job])
        except IntegrityError:
            existing = Job.objects.filter(
                idempotency_key=job.idempotency_key, status__in=ACTIVE_STATUSES
            ).first()
            if existing is not None:
                return existing, False
            continue  # the holder finished in between: insert again
        _log_transition(job, "enqueue")
        return job, True
    raise TransitionRefused(f"idempotency key {idempotency_key!r} is contended")


def enqueue_many(specs: Sequence[dict[str, Any]]) -> list[Job]:
    """Create many queued jobs in one write, in order; each spec takes ``enqueue``'s arguments
    (idempotency keys aside).

    All or nothing: raises ``InvalidJob`` naming each bad spec by index (``"3.payload"``).
    """
    jobs, errors = [], {}
    default_attempts = conf.MAX_ATTEMPTS  # read once: settings lookups add up over 1,000s
    for index, spec in enumerate(specs):
        try:
            task = check_job(**spec)
        except InvalidJob as exc:
            errors |= {f"{index}.{field}": texts for field, texts in exc.errors.items()}
            continue
        jobs.append(_new_job(task, spec, default_attempts))
    if errors:
        raise InvalidJob(errors)
    created = _insert(jobs)
    for job in created:
        _log_transition(job, "enqueue")
    return created


def _new_job(spec: tasks.TaskSpec, args: Mapping[str, Any], default_attempts: int) -> Job:
    """Build (unsaved) the job of checked ``enqueue`` arguments: unset options are the task's
    (``default_attempts``: JOBS_MAX_ATTEMPTS, for a task without its own)."""
    get = args.get
    return Job(
        task=spec.name,
        payload=get("payload"),
        queue=get("queue") or spec.queue,
        priority=spec.priority if get("priority") is None else args["priority"],
        run_after=get("run_after"),
        max_attempts=get("max_attempts") or spec.max_attempts or default_attempts,
        timeout=spec.timeout if get("timeout") is None else args["timeout"],
    )


def _insert(jobs: list[Job]) -> list[Job]:
    """Insert queued jobs and wake listening workers, in one transaction.

    Rather than ``bulk_create``, whose compiler prepares each column of each row
    on its own and costs several times the database's work: a column whose value
    is the very same object in every job (a default, the shared timestamp) is
    prepared once, the others go through their field's ``get_db_prep_save`` row by
    row, and the rows go in with ``COPY`` on PostgreSQL, else one INSERT executed
    per job.
    """
    if not jobs:
        return jobs
    now = timezone.now()
    for offset, job in enumerate(jobs):
        # One microsecond apart: jobs of one call keep their order in the claim
        # order (FIFO within a priority), whatever order the rows land in.
        job.created_at = job.updated_at = now + timedelta(microseconds=offset)
    fields = Job._meta.concrete_fields
    shared: dict[str, Any] = {}  # attname -> the value prepared once
    for f in fields:
        first = getattr(jobs[0], f.attname)
        if all(getattr(job, f.attname) is first for job in jobs):
            shared[f.attname] = f.get_db_prep_save(first, connection)
    rows = [
        [
            shared[f.attname]
            if f.attname in shared
            else f.get_db_prep_save(getattr(job, f.attname), connection)
            for f in fields
        ]
        for job in jobs
    ]
    quote = connection.ops.quote_name
    into = f"{quote(Job._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(jobs) > 1:
            # COPY streams every row in one command: no statement per row. (On the
            # driver's cursor, so its errors are wrapped into Django's here.)
            with connection.wrap_database_errors:
                with cursor.cursor.copy(f"COPY {into} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {into} VALUES ({placeholders})", rows)  # noqa: S608
        notify.notify(job.queue for job in jobs)
    for job in jobs:
        job._state.adding, job._state.db = False, connection.alias
    return jobs


def enqueue_fire(*, schedule_id: int, fire_at: datetime, **job: Any) -> Job | None:
    """Create the job for one fire time of a schedule, unless that fire time already has one.

    The fire record and the job are inserted in one transaction; the unique
    ``(schedule, fire_at)`` constraint makes every other attempt at the same fire
    time, in any process, fail and return ``None``. ``job`` takes ``enqueue``'s
    arguments (no idempotency key). Raises ``InvalidJob`` (``check_job``).
    """
    try:
        with transaction.atomic():
            fire = ScheduleFire.objects.create(schedule_id=schedule_id, fire_at=fire_at)
            created, _ = enqueue(**job)
            fire.job = created
            fire.save(update_fields=["job"])
    except IntegrityError:
        return None
    return created


# The ranges of a job's options (the API's schema documents the same).
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
PRIORITY_RANGE = (-100, 100)
MAX_ATTEMPTS_RANGE = (1, 100)
TIMEOUT_RANGE = (0.1, 86400.0)
MAX_IDEMPOTENCY_KEY = 200


def check_job(
    *,
    task: str = "simulate",
    payload: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> tasks.TaskSpec:
    """Check the job ``enqueue`` would create from these arguments; return its task.

    The one set of rules for a new job, whoever asks for it (the API, the admin, a
    schedule, ``django.tasks``, Python code): a registered task; a payload within
    ``validate_payload``'s limits that its task's schema accepts; each option in
    range. ``None`` (or an empty queue) stands for the task's default. Raises
    ``UnknownTask``, else ``InvalidJob`` naming every field at fault.
    """
    if not isinstance(task, str):
        raise InvalidJob({"task": ["Give a task name (a string)."]})
    spec = tasks.get(task)
    errors: dict[str, list[str]] = {}
    try:
        validate_payload(payload)
        spec.validate_payload(payload)
    except InvalidPayload as exc:
        errors |= flatten_errors(exc.errors, "payload")
    if queue and not (isinstance(queue, str) and QUEUE_NAME.fullmatch(queue)):
        errors["queue"] = ["Use 1-100 letters, digits, '_', '.', ':' or '-'."]
    for name, value, kinds, (low, high) in (
        ("priority", priority, int, PRIORITY_RANGE),
        ("max_attempts", max_attempts, int, MAX_ATTEMPTS_RANGE),
        ("timeout", timeout, (int, float), TIMEOUT_RANGE),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high
        ):
            errors[name] = [f"Use a number from {low} to {high}."]
    if run_after is not None and not isinstance(run_after, datetime):
        errors["run_after"] = ["Give a datetime, or None for now."]
    if idempotency_key and not (
        isinstance(idempotency_key, str) and len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
    ):
        errors["idempotency_key"] = [f"Use a string of at most {MAX_IDEMPOTENCY_KEY} characters."]
    if errors:
        raise InvalidJob(errors)
    return spec


def validate_payload(payload: Any) -> None:
    """Raise ``InvalidPayload`` unless ``payload`` fits ``JOBS_MAX_PAYLOAD_BYTES``.

    Also refused: nesting deeper than ``MAX_PAYLOAD_DEPTH`` and NUL characters,
    which PostgreSQL cannot store in JSON.
    """
    if payload is None:
        return  # the commonest payload, and within every limit
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidPayload(f"The payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels.")
        if isinstance(value, dict):
            stack += [(key, depth) for key in value] + [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(item, depth + 1) for item in value]
        elif isinstance(value, str) and "\x00" in value:
            raise InvalidPayload("The payload contains a NUL character (\\u0000).")
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > conf.MAX_PAYLOAD_BYTES:
        raise InvalidPayload(
            f"The payload is {size} bytes as JSON; the limit is {conf.MAX_PAYLOAD_BYTES}."
        )


# -- claiming and the holder's transitions ------------------------------------------------


def claim(
    *,
    worker_id: str,
    queues: Sequence[str] | None = None,
    limit: int = 1,
    lease_seconds: float | None = None,
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker_id``, in claim order.

    One statement selects the due jobs in claim order and marks them processing:
    ``WITH due AS MATERIALIZED (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED])
    UPDATE ... WHERE id IN (SELECT * FROM due) RETURNING ...``. On PostgreSQL,
    rows another transaction has locked are skipped, never waited on; SQLite
    serialises writers (the project's SQLite settings open write transactions
    with BEGIN IMMEDIATE and a busy timeout).

    A claimed job has no ``started_at`` until its attempt starts executing
    (``runner.execute``): with ``--batch`` it may first wait in an executor's hand.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds or conf.LEASE_SECONDS)
    fields = list(Job._meta.concrete_fields)
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic(), connection.cursor() as cursor:
        due = Job.objects.claimable(queues=queues, now=now).values("pk")[:limit]
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
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
        cursor.execute(sql, [*due_params, *params])
        rows = cursor.fetchall()
    columns = _columns(fields)
    claimed = [_from_row(columns, row) for row in rows]
    # RETURNING keeps no order: restore the claim order.
    claimed.sort(key=lambda job: (-job.priority, job.run_after or job.created_at))
    for job in claimed:
        _log_transition(job, "claim")
    return claimed


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
        raise _refused(job_id, "claim")
    job = Job.objects.get(pk=job_id)
    _log_transition(job, "claim")
    return job


def _held(job: Job, worker_id: str) -> Any:
    return Job.objects.filter(
        pk=job.pk, status=PROCESSING, worker_id=worker_id, attempts=job.attempts
    )


def succeed(*, job: Job, worker_id: str, result: Any = None) -> None:
    """Record success of the attempt ``job`` describes. Raises ``TransitionRefused``."""
    now = timezone.now()
    if not _mark_done(job, worker_id, result, now):
        raise _refused(job.pk, "succeed")
    job.result = result
    _log_transition(job, "succeed", outcome="done", duration=_duration(job, now))


def _started(job: Job) -> dict[str, Any]:
    """The attempt's start to record with its outcome, when the caller knows it."""
    return {"started_at": job.started_at} if job.started_at is not None else {}


def _mark_done(job: Job, worker_id: str, result: Any, now: datetime) -> bool:
    updated = _held(job, worker_id).update(
        status=DONE,
        result=result,
        error=None,
        traceback=None,
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
        **_started(job),
    )
    if updated:
        job.status, job.finished_at = DONE, now
    return bool(updated)


def succeed_many(*, worker_id: str, completions: Sequence[tuple[Job, Any]]) -> int:
    """Record several successes in one transaction; return how many were still held.

    Each is fenced like ``succeed`` (on job, status, worker and attempt); one that
    was taken away meanwhile is skipped. On PostgreSQL one ``UPDATE ... FROM
    unnest(arrays)`` writes them all and returns the ids it recorded; elsewhere
    one statement is executed per job (SQLite has no round trip to save).
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
    done = "status = %s, error = NULL, traceback = NULL, finished_at = %s, "
    done += "lease_expires_at = NULL, updated_at = %s"
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
        else:
            cursor.executemany(
                f"UPDATE {table} SET {done}, result = %s, "  # noqa: S608
                "started_at = COALESCE(%s, started_at) "
                "WHERE id = %s AND attempts = %s AND status = %s AND worker_id = %s",
                [
                    (DONE, stamp, stamp, result, start, pk, attempt, PROCESSING, worker_id)
                    for pk, attempt, result, start in zip(
                        ids, attempts, results, starts, strict=True
                    )
                ],
            )
            recorded = cursor.rowcount
            mine = None
    if recorded < len(held):
        # Some were taken away meanwhile: keep only those this worker recorded.
        if mine is None:
            mine = set(
                Job.objects.filter(
                    pk__in=[job.pk for job in held], status=DONE, finished_at=now
                ).values_list("pk", flat=True)
            )
        logger.warning(
            "worker=%s discarded=%s completions no longer held", worker_id, len(held) - len(mine)
        )
        held = [job for job in held if job.pk in mine]
    for job in held:
        job.status, job.finished_at = DONE, now
        _log_transition(job, "succeed", outcome="done", duration=_duration(job, now))
    return len(held)


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
        if not _held(job, worker_id).update(**changes):
            raise _refused(job.pk, "fail")
        _archive([job], outcome=outcome, now=now, error=error, traceback=traceback)
    job.status = changes["status"]
    _log_transition(job, "fail", outcome=str(outcome), error=error, duration=_duration(job, now))
    return job.status


def report_progress(*, job: Job, worker_id: str, percent: int, message: str = "") -> bool:
    """Record the progress of the attempt ``worker_id`` holds; return whether it still holds it.

    Not a status change: one UPDATE fenced like the holder's transitions, so a
    stale holder cannot write over the attempt that replaced it.
    """
    return bool(_held(job, worker_id).update(progress=percent, progress_message=message[:500]))


def release(*, jobs: Iterable[Job], worker_id: str, started: bool = False) -> int:
    """Hand claimed jobs back to the queue unfinished; return how many were released.

    A job that never ``started`` gets its attempt back. A started one keeps it, so
    attempt numbers only grow and keep fencing out the holder that let it go.
    """
    now = timezone.now()
    released = 0
    for job in jobs:
        updated = _held(job, worker_id).update(
            status=QUEUED,
            worker_id=None,
            lease_expires_at=None,
            attempts=F("attempts") - (0 if started else 1),
            updated_at=now,
        )
        released += updated
        if updated:
            _log_transition(job, "release")
    return released


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
            _held(job, worker_id).update(started_at=started_at, updated_at=now)
            for job, started_at in starts
        )


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
                "traceback": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if requeue:
                changes |= {"status": QUEUED, "worker_id": None, "run_after": None}
            else:
                changes |= {"status": FAILED, "finished_at": now}
            if _held(job, job.worker_id).update(**changes):
                recovered.append(job)
                job.status = changes["status"]
        _archive(recovered, outcome=Outcome.LOST, now=now, error="worker lost")
    for job in recovered:
        _log_transition(job, "recover", outcome=Outcome.LOST.value)
    return len(recovered)


def _archive(
    jobs: Sequence[Job], *, outcome: str, now: datetime, error: str | None, traceback=None
) -> None:
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


# -- operator and client transitions ------------------------------------------------------


def cancel(*, job_id: Any) -> Job:
    """Cancel a queued or processing job. Raises ``TransitionRefused`` otherwise.

    A running task is not interrupted here: its holder finds the job cancelled at
    its next heartbeat or when it reports, and its result is discarded.
    """
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status__in=ACTIVE_STATUSES).first()
        if job is None:
            raise _refused(job_id, "cancel")
        Job.objects.filter(pk=job.pk, status=job.status).update(
            status=CANCELLED, finished_at=now, lease_expires_at=None, updated_at=now
        )
        if job.status == PROCESSING:
            _archive([job], outcome=Outcome.CANCELLED, now=now, error="cancelled")
    job.refresh_from_db()
    _log_transition(job, "cancel")
    return job


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
                **_requeued(now)
            )
    except IntegrityError:
        # Requeued, it would be a second unfinished holder of its idempotency key.
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        raise TransitionRefused(
            f"cannot retry job {job_id}: an unfinished job holds its idempotency key",
            current=current,
        ) from None
    if not updated:
        raise _refused(job_id, "retry")
    job = Job.objects.get(pk=job_id)
    _log_transition(job, "retry")
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
        if not release(jobs=[job], worker_id=holder, started=True):
            raise _refused(job.pk, "release")
    elif verb == "succeed":
        succeed(job=job, worker_id=holder, result=job.result)
    else:
        fail(job=job, worker_id=holder, error="marked failed by an operator", retry=False)
    job.refresh_from_db()
    return job


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


def claim_for_hand(*, job_id: Any) -> Job:
    """Mark a queued job processing by hand (held by ``manual`` under a normal lease)."""
    return _claim_one(job_id, MANUAL_HOLDER, take_manual=False)


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
        Job.objects.filter(pk=job.pk).delete()
    _log_transition(job, "delete")
    return job


# -- set-based operator transitions (the admin's actions) ---------------------------------


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
        _archive(running, outcome=Outcome.CANCELLED, now=now, error="cancelled")
    skipped = {status: n for status, n in found.items() if status not in ACTIVE_STATUSES}
    logger.info("transition=cancel changed=%s skipped=%s", changed, skipped)
    return BulkResult(changed, skipped)


def _requeued(now: datetime) -> dict[str, Any]:
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


def retry_many(*, ids: Selection) -> BulkResult:
    """Requeue the selected failed, cancelled or done jobs to run as soon as possible."""
    try:
        with transaction.atomic():
            return _bulk(ids, "retry", TRANSITIONS["retry"][0], **_requeued(timezone.now()))
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


def _duration(job: Job, now: datetime) -> float | None:
    return round((now - job.started_at).total_seconds(), 6) if job.started_at else None


def _log_transition(job: Job, verb: str, **fields: Any) -> None:
    """Log one line for a transition and count it in the metrics.

    The fields are in the message as ``key=value`` and on the record as extras
    (``job_id``, ``transition``, ``status``, ``task``, ``queue``, ``attempt``,
    ``worker``, and ``outcome``, ``duration``, ``error`` when known), which the
    JSON log format writes as keys.
    """
    _count_transition(job, verb, fields)
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = {key: value for key, value in fields.items() if value is not None}
    extra = {
        "job_id": str(job.pk),
        "transition": verb,
        "status": job.status,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempts,
        "worker": job.worker_id,
        **fields,
    }
    logger.info(
        "job=%s transition=%s status=%s task=%s queue=%s attempt=%s worker=%s%s",
        job.pk,
        verb,
        job.status,
        job.task,
        job.queue,
        job.attempts,
        job.worker_id,
        "".join(f" {key}={value}" for key, value in fields.items()),
        extra=extra,
    )


def _count_transition(job: Job, verb: str, fields: dict[str, Any]) -> None:
    if verb == "enqueue":
        _count_safely(metrics.record_enqueued, task=job.task, queue=job.queue)
    elif fields.get("outcome"):
        _count_safely(
            metrics.record_attempt,
            task=job.task,
            queue=job.queue,
            outcome=fields["outcome"],
            status=job.status,
            duration=fields.get("duration"),
        )


def _count_safely(record: Callable[..., None], **kwargs: Any) -> None:
    # A metrics problem (an unwritable multiprocess directory, ...) must never
    # undo or hide a transition that is already committed.
    try:
        record(**kwargs)
    except Exception:
        logger.exception("metrics not recorded: %s", kwargs)
