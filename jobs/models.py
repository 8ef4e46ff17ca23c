"""The job table and its read-only selectors.

Nothing here changes a job's status: every write of ``Job.status`` lives in
``jobs.lifecycle``. The models sit just above ``jobs.conf`` and
``jobs.exceptions`` and import nothing else of the app: which task names exist
is the registry's business (``jobs.tasks``), checked by the code that takes a
schedule's input (``jobs.api``, ``jobs.admin``).
"""

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

from croniter import CroniterBadDateError, croniter
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connections, models
from django.db.models import F, Q
from django.db.models.expressions import Col
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from jobs.conf import conf, parse_rate


class Status(models.TextChoices):
    QUEUED = "queued"  # waiting to be claimed (possibly not before run_after)
    PROCESSING = "processing"  # claimed: a worker (or an operator) holds it under a lease
    DONE = "done"  # finished successfully; result holds the return value
    FAILED = "failed"  # out of attempts, or failed permanently: the failure queue
    CANCELLED = "cancelled"  # stopped by a client or operator; never runs again unless retried
    WAITING = "waiting"  # a workflow's job whose parents have not all ended: never claimed


# Not finished: a waiting job is queued once its last parent ends (or cancelled with it).
ACTIVE_STATUSES = (Status.QUEUED, Status.PROCESSING, Status.WAITING)
# The statuses of a job that may run or is running: the predicate of the partial indexes
# on idempotency keys and on retrying causes. A lookup must name exactly these (not
# ACTIVE_STATUSES) for the database to use those indexes. Waiting jobs hold no key.
RUNNABLE_STATUSES = (Status.QUEUED, Status.PROCESSING)
FINISHED_STATUSES = (Status.DONE, Status.FAILED, Status.CANCELLED)

# When a queued job becomes runnable: its run_after if deferred, else its
# creation. Claim order and the claim index both use this one expression, so
# due jobs run FIFO within a priority and a deferred job takes its place in
# line at its run_after, without a sentinel date.
DUE_AT = Coalesce(F("run_after"), F("created_at"))


class _DueAtColumn(models.Expression):
    """``DUE_AT`` read from the virtual column ``due_at`` that the claim indexes cover on
    MariaDB and MySQL (migration 0011): neither matches an expression to an index there."""

    output_field = models.DateTimeField()

    def resolve_expression(self, query: Any = None, *args: Any, **kwargs: Any) -> Any:
        field = models.DateTimeField(name="due_at")
        field.set_attributes_from_name("due_at")
        field.model = Job
        return Col(query.get_initial_alias(), field, output_field=field)


def due_at(using: str) -> models.Expression:
    """The expression for ``DUE_AT`` on the database ``using`` (an alias)."""
    return _DueAtColumn() if connections[using].vendor == "mysql" else DUE_AT


class JobQuerySet(models.QuerySet):
    def claimable(
        self,
        *,
        queues: Sequence[str] | None = None,
        now: datetime | None = None,
        tasks: Sequence[str] | None = None,
        exclude_tasks: Sequence[str] = (),
    ) -> "JobQuerySet":
        """Queued jobs that are due, in claim order (priority, then due time).

        ``tasks`` keeps only those tasks; ``exclude_tasks`` leaves those out.
        """
        qs = self.filter(status=Status.QUEUED).alias(due_at=due_at(self.db))
        qs = qs.filter(due_at__lte=now or Now())
        if queues:
            qs = qs.filter(queue__in=list(queues))
        if tasks is not None:
            qs = qs.filter(task__in=list(tasks))
        if exclude_tasks:
            qs = qs.exclude(task__in=list(exclude_tasks))
        return qs.order_by("-priority", "due_at")

    def lease_expired(self, *, now: datetime | None = None) -> "JobQuerySet":
        """Processing jobs whose holder stopped renewing its lease."""
        return self.filter(status=Status.PROCESSING, lease_expires_at__lt=now or Now())


class Workflow(models.Model):
    """Jobs created together, some waiting for others (``jobs.lifecycle.workflow``).

    Its state is its jobs' (``lifecycle.workflow_state``); deleting a workflow keeps its jobs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or str(self.id)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.CharField(max_length=200, default="simulate")
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    run_after = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    timeout = models.FloatField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    # The cause of the last failure, short enough to group by (``lifecycle.error_key``):
    # the exception's class name, or the error's first line when it names none.
    error_class = models.CharField(max_length=200, null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)  # 0..100 while running
    progress_message = models.CharField(max_length=500, blank=True, default="")
    # Jobs sharing a key share its concurrency limit (see jobs.lifecycle.flow).
    concurrency_key = models.CharField(max_length=200, null=True, blank=True)
    # Workflows (jobs.lifecycle.workflow): the workflow and the job's name in it; whether
    # other jobs wait for this one (so ending a job without dependents costs nothing more);
    # and, once its parents ended, their outcomes (id, name, status, result, error).
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    step = models.CharField(max_length=100, null=True, blank=True)
    has_dependents = models.BooleanField(default=False)
    parent_results = models.JSONField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("work_job", "Can work jobs as a remote worker")]
        indexes = [
            # Claiming reads only queued rows, so finished rows never slow it down.
            models.Index(
                F("queue"),
                F("priority").desc(),
                DUE_AT,
                name="jobs_claim_idx",
                condition=Q(status="queued"),
            ),
            # A worker serving every queue claims in the same order across queues.
            models.Index(
                F("priority").desc(),
                DUE_AT,
                name="jobs_claim_any_idx",
                condition=Q(status="queued"),
            ),
            # Flow control: due jobs with a key, and the processing jobs holding each key.
            models.Index(
                F("priority").desc(),
                DUE_AT,
                name="jobs_claim_keyed_idx",
                condition=Q(status="queued", concurrency_key__isnull=False),
            ),
            models.Index(
                fields=["concurrency_key"],
                name="jobs_key_processing_idx",
                condition=Q(status="processing", concurrency_key__isnull=False),
            ),
            # A limited queue's claim counts its processing jobs (at most its limit).
            models.Index(
                fields=["queue"],
                name="jobs_queue_processing_idx",
                condition=Q(status="processing"),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="jobs_lease_idx",
                condition=Q(status="processing"),
            ),
            models.Index(fields=["status", "-created_at"], name="jobs_status_created_idx"),
            models.Index(fields=["-created_at"], name="jobs_created_idx"),
            # The job list's "has error" filter: the jobs with an error, newest first
            # (built by migration 0013 where indexes can be partial, not on MySQL).
            models.Index(
                fields=["-created_at"],
                name="jobs_error_created_idx",
                condition=Q(error__isnull=False),
            ),
            # The admin's filters and dashboard (throughput reads the last hour only).
            models.Index(fields=["queue", "-created_at"], name="jobs_queue_created_idx"),
            models.Index(fields=["task", "-created_at"], name="jobs_task_created_idx"),
            # The dashboard's queue lag: the oldest due time among queued jobs.
            models.Index(DUE_AT, name="jobs_queued_due_idx", condition=Q(status="queued")),
            models.Index(
                fields=["finished_at"],
                name="jobs_finished_idx",
                condition=Q(finished_at__isnull=False),
            ),
            # The admin's failures view groups the failure queue by cause and task.
            models.Index(
                fields=["error_class", "task", "finished_at"],
                name="jobs_failed_cause_idx",
                condition=Q(status="failed"),
            ),
            # ... and links to the job list of one cause, newest first: read in this
            # index's order, not fetched whole and sorted (20,000 rows of a cause at 10M).
            models.Index(
                F("error_class"),
                F("task"),
                F("created_at").desc(),
                name="jobs_failed_cause_new_idx",
                condition=Q(status="failed"),
            ),
            # ... and counts the jobs of each cause still retrying (few: only those with
            # a failed attempt behind them).
            models.Index(
                fields=["error_class", "task"],
                name="jobs_retrying_cause_idx",
                condition=Q(status__in=RUNNABLE_STATUSES, error_class__isnull=False),
            ),
            # Retention deletes finished jobs by age, a batch at a time.
            models.Index(
                fields=["status", "finished_at"],
                name="jobs_retention_idx",
                condition=Q(status__in=["done", "failed", "cancelled"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=-100, priority__lte=100), name="jobs_priority_range"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="jobs_status_valid"
            ),
            # One unfinished job per idempotency key; enforced by the database,
            # so two concurrent creates cannot both insert.
            # (Jobs without a key stay out of the index: they never conflict, and
            # every status change would otherwise write an entry for them.)
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(status__in=RUNNABLE_STATUSES, idempotency_key__isnull=False),
                name="jobs_idempotency_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.id} ({self.status})"


def validate_rate(value: str) -> None:
    """Accept ``N/period`` (``10/s``, ``1000/h``, ``5/30s``). Raises ``ValidationError``."""
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class Queue(models.Model):
    """Flow control of one queue: paused or not, and limits that override ``JOBS_QUEUES``.

    A limit left empty falls back to ``JOBS_QUEUES``, then to none. Change it
    through ``jobs.lifecycle`` (``pause_queue``, ``resume_queue``) or the admin.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(r"^[A-Za-z0-9_.:-]+$", "Use letters, digits, '_', '.', ':' or '-'.")
        ],
    )
    paused = models.BooleanField(default=False, help_text="Its jobs are not claimed while paused.")
    concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most jobs processing at once, across all workers; empty: JOBS_QUEUES's.",
    )
    key_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most jobs processing at once per concurrency key; empty: JOBS_QUEUES's, "
        "else the task's, else 1.",
    )
    rate = models.CharField(
        max_length=32,
        blank=True,
        default="",
        validators=[validate_rate],
        help_text="Most job starts per period, e.g. 10/s, 1000/h; empty: JOBS_QUEUES's.",
    )
    key_rate = models.CharField(
        max_length=32,
        blank=True,
        default="",
        validators=[validate_rate],
        help_text="Most job starts per period per concurrency key; empty: JOBS_QUEUES's.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RateSlot(models.Model):
    """One of a rate limiter's N slots: a start takes a slot last used a period ago."""

    limiter = models.CharField(max_length=400)  # "queue:<name>", "key:<queue>:<key>"
    number = models.PositiveIntegerField()
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["limiter", "number"], name="jobs_rate_slot_unique")
        ]

    def __str__(self) -> str:
        return f"{self.limiter} #{self.number}"


class ConcurrencyKey(models.Model):
    """A concurrency key's lock row: claims of its jobs lock it, so they take turns."""

    key = models.CharField(max_length=200, primary_key=True)

    def __str__(self) -> str:
        return self.key


class OnParentFailure(models.TextChoices):
    CANCEL = "cancel"  # a parent failed, was cancelled or deleted: cancel the dependent
    RUN = "run"  # any ending of the parent counts: run the dependent anyway


class Dependency(models.Model):
    """An edge of a workflow: ``child`` waits until ``parent`` has ended.

    The parent is referenced without a database constraint, so the edge outlives a
    purged or deleted parent: ``parent_final`` then keeps the status the parent had
    when it went (``deleted`` for one that had not finished).
    """

    child = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(
        Job,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="child_links",
    )
    parent_name = models.CharField(max_length=100)
    on_parent_failure = models.CharField(
        max_length=8, choices=OnParentFailure.choices, default=OnParentFailure.CANCEL
    )
    parent_final = models.CharField(max_length=16, null=True, blank=True)

    class Meta:
        ordering = ["child", "id"]
        constraints = [
            models.UniqueConstraint(fields=["child", "parent"], name="jobs_dependency_unique")
        ]

    def __str__(self) -> str:
        return f"{self.child_id} after {self.parent_id}"


class Outcome(models.TextChoices):
    FAILED = "failed"  # the task raised
    TIMED_OUT = "timed_out"  # the task overran its timeout and was stopped
    LOST = "lost"  # the worker stopped renewing its lease (crash, kill, long pause)
    CANCELLED = "cancelled"  # cancelled while running
    RELEASED = "released"  # handed back unfinished (shutdown, operator)


class JobAttempt(models.Model):
    """An attempt that did not end in success, archived when the job moved on.

    The job row itself always describes its latest attempt, so a job that
    succeeds first time writes no history row at all.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="history")
    number = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=200, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number", "id"]
        indexes = [models.Index(fields=["job", "number"], name="jobs_attempt_job_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"


class WorkerQuerySet(models.QuerySet):
    def alive(self, *, now: datetime | None = None) -> "WorkerQuerySet":
        """Workers whose heartbeat is recent enough that they may still hold leases."""
        return self.filter(last_heartbeat_at__gte=(now or timezone.now()) - stale_after())

    def dead(self, *, now: datetime | None = None) -> "WorkerQuerySet":
        return self.filter(last_heartbeat_at__lt=(now or timezone.now()) - stale_after())


def stale_after() -> timedelta:
    """A worker that has not beaten for a whole lease is presumed dead."""
    return timedelta(seconds=conf.LEASE_SECONDS)


class Worker(models.Model):
    """The registry row of one running worker: a ``runworker`` process (removed on clean
    exit) or a remote worker of the HTTP protocol (renewed by its claims and heartbeats)."""

    id = models.CharField(max_length=200, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)  # empty: all queues
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return self.id

    @property
    def is_alive(self) -> bool:
        return self.last_heartbeat_at >= timezone.now() - stale_after()

    def current_jobs(self) -> "JobQuerySet":
        return Job.objects.filter(status=Status.PROCESSING, worker_id=self.id)


def validate_cron(value: str) -> None:
    """Accept five cron fields, or six with seconds first, that name a time which exists.

    Raises ``ValidationError``.
    """
    fields = value.split()
    if len(fields) not in (5, 6):
        raise ValidationError(
            f"{value!r} has {len(fields)} fields: use five "
            "(minute hour day month weekday), or six with seconds first."
        )
    expression, seconds = " ".join(fields), len(fields) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise ValidationError(f"{value!r} is not a valid cron expression.")
    try:
        # Well formed is not enough: "0 0 31 2 *" (February 31st) parses, but croniter
        # finds no fire time and raises when asked for the next one.
        croniter(expression, second_at_beginning=seconds).get_next(datetime)
    except CroniterBadDateError:
        raise ValidationError(
            f"{value!r} never fires: no date matches it (e.g. February 30th or April 31st)."
        ) from None


@functools.cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names this system knows (read once: listing walks the database)."""
    return frozenset(available_timezones())


def validate_timezone(value: str) -> None:
    """Accept an IANA time zone name (one of ``time_zones()``, the list the API's schema
    gives). Raises ``ValidationError``."""
    if value not in time_zones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Paris).")


class Schedule(models.Model):
    """A recurring job: a cron timetable that creates one job per fire time.

    ``next_fire_at`` is the earliest fire time not yet handled (null while
    disabled). Workers fire due schedules; the unique ``(schedule, fire_at)`` of
    ``ScheduleFire`` makes each fire time create at most one job, however many
    workers see it due. Change it through ``jobs.schedules``.
    """

    name = models.CharField(max_length=200, unique=True)
    cron = models.CharField(
        max_length=200,
        validators=[validate_cron],
        help_text="Five fields (minute hour day month weekday), or six with seconds first.",
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    task = models.CharField(max_length=200)  # a registered name: see jobs.tasks
    payload = models.JSONField(null=True, blank=True)
    queue = models.CharField(
        max_length=100,
        blank=True,
        default="",
        validators=[
            RegexValidator(r"^[A-Za-z0-9_.:-]*$", "Use letters, digits, '_', '.', ':' or '-'.")
        ],
        help_text="Empty: the task's own queue.",
    )
    priority = models.SmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-100), MaxValueValidator(100)],
        help_text="-100..100; empty: the task's own priority.",
    )
    enabled = models.BooleanField(default=True)
    catch_up = models.BooleanField(
        default=False,
        help_text="After downtime, create a job for every missed fire time (bounded), "
        "not only for the latest.",
    )
    last_fire_at = models.DateTimeField(null=True, blank=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(
                fields=["next_fire_at"], name="jobs_schedule_due_idx", condition=Q(enabled=True)
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=-100, priority__lte=100) | Q(priority__isnull=True),
                name="jobs_schedule_priority_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ScheduleFire(models.Model):
    """One fire time of a schedule that has been handled: the exactly-once guard.

    The job link survives the job's deletion as null, so a purged or deleted job
    never lets its fire time fire again.
    """

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fire_at = models.DateTimeField()
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["schedule", "-fire_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "fire_at"], name="jobs_schedule_fire_once")
        ]
        indexes = [models.Index(fields=["fire_at"], name="jobs_schedule_fire_at_idx")]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.fire_at.isoformat()}"
