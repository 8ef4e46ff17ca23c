"""Creating jobs: ``enqueue``, ``enqueue_many``, ``enqueue_fire``, and the rules every
new job must meet (``check_job``, ``validate_payload``), whoever asks for it.

The only code that inserts jobs (and wakes the workers listening for them); it
must not change a job that already exists.
"""

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from itertools import chain
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs import notify, tasks
from jobs.conf import conf
from jobs.exceptions import InvalidJob, InvalidPayload, TransitionRefused, flatten_errors
from jobs.lifecycle import flow
from jobs.lifecycle.events import log_enqueued, log_transition
from jobs.models import RUNNABLE_STATUSES, Job, ScheduleFire


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
    concurrency_key: str | None = None,
) -> tuple[Job, bool]:
    """Create a queued job; return ``(job, created)``.

    With an ``idempotency_key`` that an unfinished job already holds, return that
    job and ``created=False``. Raises ``UnknownTask`` or ``InvalidJob`` (see
    ``check_job``): nothing is created.
    """
    args = {"payload": payload, "queue": queue, "priority": priority, "run_after": run_after}
    args |= {"max_attempts": max_attempts, "timeout": timeout, "concurrency_key": concurrency_key}
    spec = check_job(task=task, idempotency_key=idempotency_key, **args)
    job = _new_job(spec, args)
    job.idempotency_key = idempotency_key or None
    if not job.idempotency_key:
        _insert([job])
        log_transition(job, "enqueue")
        return job, True
    for _ in range(3):
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction goes on
                _insert([job])
        except IntegrityError:
            existing = next(iter(holder_of(job.idempotency_key)), None)
            if existing is not None:
                return existing, False
            continue  # the holder finished in between: insert again
        log_transition(job, "enqueue")
        return job, True
    raise TransitionRefused(f"idempotency key {idempotency_key!r} is contended")


def holder_of(idempotency_key: str) -> QuerySet:
    """The unfinished job holding ``idempotency_key`` (through its partial unique index;
    at most one row). Unordered: ordered, as ``first()`` would, the planner may instead
    walk the jobs newest first (or by id) until one holds the key."""
    return Job.objects.filter(
        idempotency_key=idempotency_key, status__in=RUNNABLE_STATUSES
    ).order_by()


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
    log_enqueued(created)
    return created


def _new_job(
    spec: tasks.TaskSpec, args: Mapping[str, Any], default_attempts: int | None = None
) -> Job:
    """Build (unsaved) the job of checked ``enqueue`` arguments: unset options are the task's
    (``default_attempts``, else JOBS_MAX_ATTEMPTS, for a task without its own)."""
    get = args.get
    defaults, fresh = _defaults()
    values = defaults.copy()
    for index in fresh:
        values[index] = _FIELDS[index].default()
    at = _AT
    values[at["task"]] = spec.name
    values[at["payload"]] = get("payload")
    values[at["queue"]] = get("queue") or spec.queue
    values[at["priority"]] = spec.priority if get("priority") is None else args["priority"]
    values[at["run_after"]] = get("run_after")
    values[at["max_attempts"]] = (
        get("max_attempts") or spec.max_attempts or default_attempts or conf.MAX_ATTEMPTS
    )
    values[at["timeout"]] = spec.timeout if get("timeout") is None else args["timeout"]
    values[at["concurrency_key"]] = get("concurrency_key") or _derived_key(spec, get("payload"))
    # Positional, every field given, as Django builds a model read from the database:
    # half the cost of keyword arguments, which a bulk create pays 1,000s of times.
    return Job(*values)


def _derived_key(spec: tasks.TaskSpec, payload: Any) -> str | None:
    """The concurrency key the task derives from ``payload``; for a task with a total
    limit that derives none, the task's own key (``flow.task_key``); else None.

    Raises ``InvalidJob`` when the derived key is too long.
    """
    key = None if spec.concurrency_key is None else spec.concurrency_key(payload)
    if key is None or key == "":
        return flow.task_key(spec.name) if spec.concurrency else None
    if len(str(key)) > MAX_CONCURRENCY_KEY:
        raise InvalidJob({"concurrency_key": [f"The task's key is over {MAX_CONCURRENCY_KEY}."]})
    return str(key)


_FIELDS = Job._meta.concrete_fields
_AT = {f.attname: index for index, f in enumerate(_FIELDS)}
_COLUMNS = [(index, f.attname, f) for index, f in enumerate(_FIELDS)]


@cache
def _defaults() -> tuple[list[Any], list[int]]:
    """Every field's default in ``_FIELDS`` order, and where the default is a callable
    to call for each job (the id)."""
    fresh = [i for i, f in enumerate(_FIELDS) if f.has_default() and callable(f.default)]
    return [f.get_default() for f in _FIELDS], fresh


def _insert(jobs: list[Job]) -> list[Job]:
    """Insert queued jobs and wake listening workers, all or nothing.

    Rather than ``bulk_create``, whose compiler prepares each column of each row
    on its own and costs several times the database's work: a column whose value
    is the very same object in every job (a default, the shared timestamp) is
    prepared once, the others go through their field's ``get_db_prep_save`` row by
    row (``None`` is NULL for every field, unprepared).

    One job is one statement, a transaction by itself (or a part of the caller's,
    committed with it): no BEGIN, SAVEPOINT or COMMIT of its own to wait for. On
    PostgreSQL that same statement sends the notification, so enqueueing a job in
    autocommit is one round trip. Many jobs go in one transaction: with ``COPY`` on
    PostgreSQL, else in multi-row INSERTs of as many rows as the database takes
    parameters for.
    """
    if not jobs:
        return jobs
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy: each of its attributes costs a lookup
    now = timezone.now()
    for offset, job in enumerate(jobs):
        # One microsecond apart: jobs of one call keep their order in the claim
        # order (FIFO within a priority), whatever order the rows land in.
        job.created_at = job.updated_at = now + timedelta(microseconds=offset)
    statements = _statements(db.vendor)
    if len(jobs) == 1:
        # Marks the caller's transaction, if any, for rollback on an error, as
        # Model.save() does: it cannot go on after a failed statement anyway.
        with transaction.mark_for_rollback_on_error(), db.cursor() as cursor:
            cursor.execute(statements.one, _rows(jobs, db)[0])
    else:
        rows = _rows(jobs, db)
        with transaction.atomic(), db.cursor() as cursor:
            if db.vendor == "postgresql":
                # COPY streams every row in one command: no statement per row. (On the
                # driver's cursor, so its errors are wrapped into Django's here.)
                with db.wrap_database_errors:
                    with cursor.cursor.copy(statements.copy) as copy:
                        for row in rows:
                            copy.write_row(row)
            else:
                # MySQL's driver inlines the values: no parameter limit, but a statement
                # must fit max_allowed_packet (16M by default on MariaDB 10.11).
                params = db.features.max_query_params or 1000 * len(_FIELDS)
                per_statement = max(1, params // len(_FIELDS))
                for start in range(0, len(rows), per_statement):
                    chunk = rows[start : start + per_statement]
                    cursor.execute(statements.values(len(chunk)), list(chain(*chunk)))
            notify.notify(job.queue for job in jobs)
    for job in jobs:
        job._state.adding, job._state.db = False, db.alias
    return jobs


def _rows(jobs: list[Job], db: Any) -> list[list[Any]]:
    """The values of ``jobs``' columns, prepared for ``db``, in ``_FIELDS`` order.

    A column whose value is the very same object in every job (a default) is
    prepared once; so is, in one job, a value that is the very same object as the
    one before it in a field of the same class (``updated_at``, ``created_at``).
    """
    shared: dict[int, Any] = {}  # column -> the value prepared once
    if len(jobs) > 1:
        for i, f in enumerate(_FIELDS):
            first = getattr(jobs[0], f.attname)
            if all(getattr(job, f.attname) is first for job in jobs):
                shared[i] = None if first is None else f.get_db_prep_save(first, db)
    template = [shared.get(i) for i in range(len(_FIELDS))]
    own = [column for column in _COLUMNS if column[0] not in shared] if shared else _COLUMNS
    rows = []
    for job in jobs:
        row = template.copy()
        last: Any = None
        last_class: Any = None
        prepared: Any = None
        for i, attname, f in own:
            value = getattr(job, attname)
            if value is None:
                continue  # NULL, for every field
            if value is not last or f.__class__ is not last_class:
                last, last_class, prepared = value, f.__class__, f.get_db_prep_save(value, db)
            row[i] = prepared
        rows.append(row)
    return rows


class _Statements(NamedTuple):
    one: str  # INSERT one row (and, on PostgreSQL, notify its queue)
    copy: str  # COPY rows in (PostgreSQL)
    into: str  # "table (columns)"

    def values(self, n: int) -> str:
        """INSERT ``n`` rows."""
        row = f"({', '.join(['%s'] * len(_FIELDS))})"
        return f"INSERT INTO {self.into} VALUES {', '.join([row] * n)}"  # noqa: S608


@cache
def _statements(vendor: str) -> _Statements:
    """The SQL of ``_insert`` for ``vendor``, built once."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    into = f"{quote(Job._meta.db_table)} ({', '.join(quote(f.column) for f in _FIELDS)})"
    one = f"INSERT INTO {into} VALUES ({', '.join(['%s'] * len(_FIELDS))})"  # noqa: S608
    if vendor == "postgresql":
        one = notify.with_notify(one, queue_column=quote(Job._meta.get_field("queue").column))
    return _Statements(one=one, copy=f"COPY {into} FROM STDIN", into=into)


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
MAX_CONCURRENCY_KEY = 200
MAX_PAYLOAD_DEPTH = 100


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
    concurrency_key: str | None = None,
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
    if concurrency_key is not None and not (
        isinstance(concurrency_key, str) and 0 < len(concurrency_key) <= MAX_CONCURRENCY_KEY
    ):
        errors["concurrency_key"] = [f"Use a string of 1 to {MAX_CONCURRENCY_KEY} characters."]
    if errors:
        raise InvalidJob(errors)
    return spec


def validate_payload(payload: Any) -> None:
    """Raise ``InvalidPayload`` unless ``payload`` fits ``JOBS_MAX_PAYLOAD_BYTES``.

    Also refused: nesting deeper than ``MAX_PAYLOAD_DEPTH``, NUL characters, which
    PostgreSQL cannot store in JSON, and values that are not JSON (NaN, a ``datetime``).
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
        elif isinstance(value, list | tuple):  # a tuple is stored as a JSON list
            stack += [(item, depth + 1) for item in value]
        elif isinstance(value, str) and "\x00" in value:
            raise InvalidPayload("The payload contains a NUL character (\\u0000).")
    try:
        # Strict JSON: a Python caller may pass what no JSON body holds, NaN included,
        # which PostgreSQL refuses to store.
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"The payload is not JSON: {exc}.") from None
    size = len(text.encode())
    if size > conf.MAX_PAYLOAD_BYTES:
        raise InvalidPayload(
            f"The payload is {size} bytes as JSON; the limit is {conf.MAX_PAYLOAD_BYTES}."
        )


# -- claiming and the holder's transitions ------------------------------------------------
