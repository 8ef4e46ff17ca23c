"""Flow control: paused queues, concurrency limits per queue and per key, rate limits.

A queue's limits are its ``Queue`` row's fields, each falling back to ``JOBS_QUEUES``
(a row's value wins; an empty field means "as the settings say"); pausing exists
only as a row. A *controlled* queue is paused or has any limit. A job with a
``concurrency_key`` is controlled wherever it is queued: at most ``key_concurrency``
jobs of one key are processing at once (the queue's, else the task's, else 1).

Exactness comes from serialising, in the claim's transaction, everything that
decides a limit (``claim._claim_controlled``):

- the plain claim statement never takes a controlled queue's job nor a keyed job:
  it excludes them within the statement itself (``free_jobs``), so a pause or a
  limit committed before it starts is always seen;
- a controlled queue is claimed with its row locked (``lock_queue``: ``SELECT ...
  FOR UPDATE`` on PostgreSQL; SQLite writers are serialised by ``BEGIN
  IMMEDIATE``), its pause and limits read under that lock, then its processing
  jobs counted. "processing" holds a slot: a dead worker's slot frees exactly when
  recovery requeues its job;
- keys are locked as rows of ``ConcurrencyKey`` (inserted if missing, locked in
  sorted order, so two claims never deadlock) before their processing jobs are
  counted. Transaction-scoped locks only: PgBouncer's transaction mode is fine;
- a task with a total limit (``register(concurrency=N)``): its jobs are keyed jobs
  (one without a key of its own is given ``task:<name>`` when created, ``task_key``),
  so the plain statement leaves them out; claims lock a ``ConcurrencyKey`` row named
  ``task:<name>`` in the same sorted pass as the keys, then count the task's
  processing jobs;
- a rate limit of N per period (per queue, or per key within a queue) is N ``RateSlot``
  rows, each holding its last use.
  A claim takes a slot last used a whole period ago and stamps it (``free_slots``);
  the executor stamps it again just before the task starts (``start_rated``,
  compare-and-set on the claim's stamp, a little ahead of the clock) and does not
  start the job if the slot moved meanwhile. So a slot's starts are a period apart
  and any window of one period holds at most N starts.

Deciding whether to look for controlled work at all costs two small reads, cached
for ``STATE_SECONDS`` (``state``): with no flow control configured, a claim that
fills its batch costs one statement, as before.
"""

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from jobs import notify, tasks
from jobs.conf import QUEUE_LIMITS, conf, parse_rate
from jobs.exceptions import UnknownTask
from jobs.models import ConcurrencyKey, Job, Queue, RateSlot, Status

STATE_SECONDS = 1.0
# A rate-limited start is stamped this far ahead of the clock: the task must begin
# before its stamp, or the executor hands the job back instead of starting it.
START_MARGIN = timedelta(seconds=0.05)
# The names of paused or limited queues, as SQL: the claim statement's exclusion (raw,
# because compiling the same subquery through the ORM doubles the claim's Python time).
_CONTROLLED_NAMES = (
    f"SELECT name FROM {Queue._meta.db_table} "  # noqa: S608
    "WHERE paused OR concurrency IS NOT NULL OR key_concurrency IS NOT NULL OR rate <> '' "
    "OR key_rate <> ''"
)


@dataclass(frozen=True)
class Limits:
    """A queue's flow control, settings and stored values merged."""

    queue: str
    paused: bool = False
    concurrency: int | None = None
    key_concurrency: int | None = None
    rate: str = ""
    key_rate: str = ""

    @property
    def controlled(self) -> bool:
        limits = (self.concurrency, self.key_concurrency, self.rate, self.key_rate)
        return self.paused or any(limits)

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        return parse_rate(self.rate) if self.rate else None

    @property
    def key_rate_limit(self) -> tuple[int, float] | None:
        return parse_rate(self.key_rate) if self.key_rate else None


def limits(name: str, row: Queue | None = None) -> Limits:
    """Return queue ``name``'s limits: ``row``'s values (read if not given), else the settings'."""
    if row is None:
        row = Queue.objects.filter(name=name).first()
    stored = {} if row is None else {k: getattr(row, k) for k in QUEUE_LIMITS}
    values = dict(conf.QUEUES.get(name, {}))
    values |= {k: v for k, v in stored.items() if v not in (None, "")}
    return Limits(queue=name, paused=bool(row and row.paused), **values)


def all_limits() -> dict[str, Limits]:
    """Every queue named in the settings or stored, with its limits (one query)."""
    rows = {row.name: row for row in Queue.objects.all()}
    names = sorted(set(rows) | set(conf.QUEUES))
    return {name: limits(name, rows.get(name) or Queue(name=name)) for name in names}


@dataclass
class State:
    """What a claim must look at beside the plain statement: controlled queues, keyed jobs."""

    queues: dict[str, Limits] = field(default_factory=dict)  # controlled ones only
    keyed: bool = False  # some due-or-not queued job carries a concurrency key
    tasks: dict[str, int] = field(default_factory=dict)  # tasks with a total limit
    read_at: float = 0.0

    def controlled(self, served: Any) -> list[Limits]:
        return [q for n, q in sorted(self.queues.items()) if not served or n in served]


_state = State()
# When (a datetime) the next rate-limited start may be due; None: nothing waits on one.
_next_start: list[datetime | None] = [None]


def state(*, refresh: bool = False) -> State:
    """The flow state, re-read when older than ``STATE_SECONDS`` or when asked."""
    global _state
    if refresh or time.monotonic() - _state.read_at >= STATE_SECONDS:
        controlled = {n: q for n, q in all_limits().items() if q.controlled}
        keyed = Job.objects.filter(status=Status.QUEUED, concurrency_key__isnull=False).exists()
        limited = tasks.concurrency_limits()
        _state = State(queues=controlled, keyed=keyed, tasks=limited, read_at=time.monotonic())
    return _state


def uncontrolled(qs: Any) -> Any:
    """``qs`` without the jobs of paused or limited queues (a subquery of the same
    statement, so a pause or limit committed before it starts is seen)."""
    qs = qs.exclude(queue__in=RawSQL(_CONTROLLED_NAMES, ()))  # noqa: S611 (a constant)
    configured = [name for name, values in conf.QUEUES.items() if values]
    return qs.exclude(queue__in=configured) if configured else qs


def free_jobs(qs: Any) -> Any:
    """``qs`` without the jobs only a controlled claim may take: those of paused or
    limited queues, those with a concurrency key and those of a limited task."""
    return uncontrolled(qs.filter(concurrency_key__isnull=True))


def task_key(task: str) -> str:
    """The concurrency key of a job of limited ``task`` that has none of its own, and the
    ``ConcurrencyKey`` row the task's claims lock (a long name is hashed to fit)."""
    key = f"task:{task}"
    if len(key) > ConcurrencyKey._meta.get_field("key").max_length:
        key = f"task:{hashlib.sha256(task.encode()).hexdigest()}"
    return key


def own_key(key: str | None, task: str) -> str | None:
    """``key`` if it is a job's own concurrency key; None if none or the task's
    (``task_key``), which only routes the job to the keyed claim."""
    return None if key == task_key(task) else key


def key_limited_jobs(limited: dict[str, int] | None = None) -> int:
    """Give the queued and processing jobs of the limited tasks that have no key (created
    before the limit was declared) their task's key, so that claims see the limit and
    count them; return how many. Runs when a worker starts."""
    limited = tasks.concurrency_limits() if limited is None else limited
    updated = 0
    active = [Status.QUEUED, Status.PROCESSING]
    for name in sorted(limited):
        jobs = Job.objects.filter(status__in=active, task=name, concurrency_key__isnull=True)
        updated += jobs.update(concurrency_key=task_key(name))
    return updated


def lock_queue(name: str) -> Limits:
    """Lock queue ``name``'s row for this transaction (creating it if missing); return its
    limits as read under the lock."""
    [row] = lock_rows(Queue, "name", [name])
    return limits(name, row)


def lock_rows(model: Any, field: str, names: Any) -> list[Any]:
    """Lock the rows of ``model`` whose ``field`` is one of ``names``, in sorted order,
    inserting the missing ones first; return them in that order.

    Only missing rows are inserted: InnoDB's duplicate check of an insert takes a shared
    lock on the row already there, and two transactions that both hold one and then ask
    for the write lock deadlock (two workers claiming one queue, pause and resume of one
    queue at once). The lock comes first, then the insert for what it did not find.
    """
    names = sorted(set(names))
    locked = model.objects.select_for_update().filter(**{f"{field}__in": names})
    rows = list(locked.order_by(field))
    if len(rows) < len(names):
        found = {getattr(row, field) for row in rows}
        new = [model(**{field: name}) for name in names if name not in found]
        model.objects.bulk_create(new, ignore_conflicts=True)
        rows = list(locked.order_by(field))
    return rows


def processing(**filters: Any) -> int:
    return Job.objects.filter(status=Status.PROCESSING, **filters).count()


def lock_keys(keys: Any, limited: Any = ()) -> tuple[dict[str, int], dict[str, int]]:
    """Lock the rows of ``keys`` and of the ``limited`` tasks in one sorted pass; return
    how many jobs each key and each task has processing, as counted under the locks."""
    keys, limited = set(keys), set(limited)
    names = sorted(keys | {task_key(task) for task in limited})
    if names:
        lock_rows(ConcurrencyKey, "key", names)
    return processing_by_key(keys), processing_by_task(limited)


def processing_by_key(keys: Any) -> dict[str, int]:
    """How many jobs each of ``keys`` has processing (0 included)."""
    counts = (
        Job.objects.filter(status=Status.PROCESSING, concurrency_key__in=list(keys))
        .values_list("concurrency_key")
        .annotate(n=Count("pk"))
    )
    return dict.fromkeys(keys, 0) | dict(counts)


def processing_by_task(names: Any) -> dict[str, int]:
    """How many jobs each task of ``names`` has processing (0 included).

    A limited task's jobs all carry a concurrency key (``task_key`` or their own), so the
    count reads the small partial index of keyed processing jobs, never the task's
    history (the task index would be the planner's other choice)."""
    if not names:
        return {}
    counts = (
        Job.objects.filter(
            status=Status.PROCESSING, concurrency_key__isnull=False, task__in=list(names)
        )
        .values_list("task")
        .annotate(n=Count("pk"))
    )
    return dict.fromkeys(names, 0) | dict(counts)


def key_limit(task: str, queue: Limits | None) -> int:
    """How many jobs of one key may be processing: the queue's, else the task's, else 1."""
    if queue is not None and queue.key_concurrency:
        return queue.key_concurrency
    try:
        return tasks.get(task).key_concurrency or 1
    except UnknownTask:
        return 1


def queue_limiter(queue: str) -> str:
    return f"queue:{queue}"


def key_limiter(queue: str, key: str) -> str:
    return f"key:{queue}:{key}"


def free_slots(limiter: str, rate: tuple[int, float], wanted: int, now: datetime) -> list[Any]:
    """Lock up to ``wanted`` of ``limiter``'s rate slots last used a period before ``now``;
    return their ids. Notes when the next slot frees if too few are (``next_start_in``)."""
    starts, period = rate
    since = now - timedelta(seconds=period)
    slots = RateSlot.objects.filter(limiter=limiter, number__lt=starts)
    # The slots are created together (one statement): the last one present means all are.
    if not slots.filter(number=starts - 1).exists():
        RateSlot.objects.bulk_create(
            [RateSlot(limiter=limiter, number=n) for n in range(starts)], ignore_conflicts=True
        )
    free = slots.filter(Q(last_used__isnull=True) | Q(last_used__lte=since))
    if connection.features.has_select_for_update_skip_locked:
        free = free.select_for_update(skip_locked=True)
    taken = list(free.order_by("last_used", "number").values_list("pk", flat=True)[:wanted])
    if len(taken) < wanted:
        _note_next_start(slots, period)
    return taken


def stamp_slots(taken: dict[Job, list[Any]], now: datetime) -> None:
    """Mark the slots each job of ``taken`` took (locked by ``free_slots``) used at ``now``,
    in one statement; each job carries its own (``rate_slots``) to its executor, to be
    stamped again as it starts."""
    RateSlot.objects.filter(pk__in=[pk for slots in taken.values() for pk in slots]).update(
        last_used=now
    )
    for job, slots in taken.items():
        job.rate_slots = [*getattr(job, "rate_slots", []), *((pk, now) for pk in slots)]


def _note_next_start(slots: Any, period: float) -> None:
    oldest = slots.order_by("last_used").values_list("last_used", flat=True).first()
    if oldest is not None:
        due = oldest + timedelta(seconds=period)
        _next_start[0] = due if _next_start[0] is None else min(_next_start[0], due)


def next_start_in() -> float | None:
    """Seconds until a rate slot that a claim found taken frees (None: none noted)."""
    due = _next_start[0]
    if due is None:
        return None
    wait = (due - timezone.now()).total_seconds()
    if wait <= 0:
        _next_start[0] = None
    return max(0.0, wait)


def announce_freed(jobs: Any) -> None:
    """Wake idle workers for the queues of ``jobs``, which just left ``processing``, when
    that freed a concurrency slot (a limited queue's, a key's or a limited task's); in the
    caller's transaction. Reads the cached flow state only: no query when nothing is
    limited."""
    limited = {name for name, q in _state.queues.items() if q.concurrency or q.key_concurrency}
    freed = {
        job.queue
        for job in jobs
        if job.concurrency_key or job.queue in limited or job.task in _state.tasks
    }
    if freed:
        notify.notify(freed)


def start_rated(job: Job) -> bool:
    """Stamp the rate slots ``job`` was claimed with as started now; return False when the
    job must not start (a slot was taken again, or the write outran the margin)."""
    slots = getattr(job, "rate_slots", None)
    if not slots:
        return True
    stamp = timezone.now() + START_MARGIN
    with transaction.atomic():
        stamped = sum(
            RateSlot.objects.filter(pk=pk, last_used=claimed_at).update(last_used=stamp)
            for pk, claimed_at in slots
        )
    job.rate_slots = [(pk, stamp) for pk, _ in slots]
    return stamped == len(slots) and timezone.now() < stamp


# -- the operator's side ---------------------------------------------------------------------


def pause_queue(*, name: str) -> Queue:
    """Stop workers claiming queue ``name``'s jobs (running ones finish); return its row."""
    return _set_paused(name, True)


def resume_queue(*, name: str) -> Queue:
    """Let workers claim queue ``name``'s jobs again, waking idle ones at once."""
    return _set_paused(name, False)


def _set_paused(name: str, paused: bool) -> Queue:
    with transaction.atomic():
        [row] = lock_rows(Queue, "name", [name])
        Queue.objects.filter(pk=row.pk).update(paused=paused, updated_at=timezone.now())
        if not paused:
            notify.notify([name])
    return Queue.objects.get(name=name)


def usage(name: str) -> dict[str, int]:
    """Queue ``name``'s jobs processing, queued, and queued and due now."""
    jobs = Job.objects.filter(queue=name)
    return {
        "processing": jobs.filter(status=Status.PROCESSING).count(),
        "queued": jobs.filter(status=Status.QUEUED).count(),
        "due": jobs.claimable(now=timezone.now()).count(),
    }


def queue_state(name: str) -> dict[str, Any]:
    """Queue ``name``'s pause, its limits in force (None where none) and its usage."""
    now_in_force = limits(name)
    return {
        "name": name,
        "paused": now_in_force.paused,
        "concurrency": now_in_force.concurrency,
        "key_concurrency": now_in_force.key_concurrency,
        "rate": now_in_force.rate or None,
        "key_rate": now_in_force.key_rate or None,
        **usage(name),
    }


def waiting_for(job: Job) -> str:
    """Why queued ``job`` is not running yet, in words; empty when nothing holds it back."""
    now = timezone.now()
    if job.status != Status.QUEUED:
        return ""
    if job.run_after and job.run_after > now:
        return f"not due until {job.run_after.isoformat()}"
    queue = limits(job.queue)
    if queue.paused:
        return f"queue {job.queue} is paused"
    if queue.concurrency and processing(queue=job.queue) >= queue.concurrency:
        return f"queue {job.queue} at its concurrency limit {queue.concurrency}"
    if own_key(job.concurrency_key, job.task):
        cap = key_limit(job.task, queue)
        if processing(concurrency_key=job.concurrency_key) >= cap:
            return f"key {job.concurrency_key} at its limit {cap}"
    if (cap := tasks.concurrency_limits().get(job.task)) and processing(task=job.task) >= cap:
        return f"task {job.task} at its concurrency limit {cap}"
    if (rate := queue.rate_limit) is not None:
        if not _has_free_slot(queue_limiter(job.queue), rate, now):
            return f"queue {job.queue} at its rate limit {queue.rate}"
    key_rate = queue.key_rate_limit
    if own_key(job.concurrency_key, job.task) and key_rate is not None:
        if not _has_free_slot(key_limiter(job.queue, job.concurrency_key), key_rate, now):
            return f"key {job.concurrency_key} at its rate limit {queue.key_rate}"
    return ""


def _has_free_slot(limiter: str, rate: tuple[int, float], now: datetime) -> bool:
    slots = RateSlot.objects.filter(limiter=limiter, number__lt=rate[0])
    since = now - timedelta(seconds=rate[1])
    return slots.count() < rate[0] or slots.filter(last_used__lte=since).exists()
