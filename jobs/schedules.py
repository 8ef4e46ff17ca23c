"""Recurring jobs: cron schedules that fire exactly once per fire time.

Every ``runworker`` process calls ``tick()`` once per loop pass. At most once a
second (``JOBS_SCHEDULE_TICK_SECONDS``) it reads the enabled schedules whose
``next_fire_at`` has passed and fires each: it works out which fire times are
due, and for each inserts a ``ScheduleFire`` row together with the job
(``lifecycle.enqueue_fire``). The database's unique constraint on
``(schedule, fire_at)`` decides which process creates the job; the others get
an integrity error and move on. No process is elected and no lock is held in
Python, so any worker on any machine may die at any time.

After downtime only the latest missed fire time gets a job, unless the schedule
has ``catch_up`` set: then every missed time does, up to
``JOBS_SCHEDULE_CATCH_UP_MAX`` of the most recent ones. Either way the work is
bounded: fire times are found walking back from now, never forward from the
last fire.

Cron expressions have five fields (minute hour day month weekday), or six with
a leading seconds field, and are evaluated in the schedule's time zone.
"""

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jobs import lifecycle
from jobs.conf import conf
from jobs.exceptions import InvalidJob, InvalidSchedule, NameTaken
from jobs.models import Job, Schedule, validate_cron, validate_timezone

logger = logging.getLogger(__name__)

PURGE_SCHEDULE = "jobs.purge"
_last_tick = float("-inf")
_builtins_ready = False


# -- the timetable ---------------------------------------------------------------------------


def _iter(schedule: Schedule, start: datetime) -> croniter:
    local = start.astimezone(ZoneInfo(schedule.timezone))
    return croniter(schedule.cron, local, second_at_beginning=len(schedule.cron.split()) == 6)


def next_after(schedule: Schedule, moment: datetime) -> datetime:
    """Return the first fire time strictly after ``moment`` (UTC)."""
    return _iter(schedule, moment).get_next(datetime).astimezone(UTC)


def due_times(schedule: Schedule, now: datetime) -> list[datetime]:
    """Return the fire times from ``next_fire_at`` up to ``now`` to fire, oldest first.

    Only the latest one, unless the schedule catches up (then at most
    ``JOBS_SCHEDULE_CATCH_UP_MAX``).
    """
    if schedule.next_fire_at is None or schedule.next_fire_at > now:
        return []
    limit = max(1, conf.SCHEDULE_CATCH_UP_MAX) if schedule.catch_up else 1
    # get_prev is strictly before its start: start one second after now.
    times = _iter(schedule, now.replace(microsecond=0) + timedelta(seconds=1))
    due: list[datetime] = []
    while len(due) < limit:
        moment = times.get_prev(datetime).astimezone(UTC)
        if moment < schedule.next_fire_at:
            break
        due.append(moment)
    return due[::-1]


def reschedule(schedule: Schedule, *, now: datetime | None = None) -> None:
    """Set ``next_fire_at`` (in memory) to the next fire time after now, or null if disabled."""
    now = now or timezone.now()
    schedule.next_fire_at = next_after(schedule, now) if schedule.enabled else None


def check(schedule: Schedule) -> None:
    """Raise ``InvalidSchedule`` unless ``schedule`` may be saved enabled.

    Its cron must fire (``validate_cron``), its time zone exist, and the job it
    creates pass ``lifecycle.check_job``: a bad payload is refused now, not at
    every fire time. The errors name the fields (``"payload.to"`` when nested).
    """
    errors: dict[str, list[str]] = {}
    for field, validate in (("cron", validate_cron), ("timezone", validate_timezone)):
        try:
            validate(getattr(schedule, field))
        except ValidationError as exc:
            errors[field] = exc.messages
    try:
        lifecycle.check_job(**_job(schedule))
    except InvalidJob as exc:
        errors |= exc.errors
    if errors:
        raise InvalidSchedule(errors)


def save(schedule: Schedule) -> Schedule:
    """Check (``check``) and save a created or edited schedule; its timetable restarts from now.

    Fire times missed before the edit never fire. Raises ``InvalidSchedule``, or
    ``NameTaken``.
    """
    check(schedule)
    reschedule(schedule)
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        # check() has seen every other rule; the unique name needs the database's word.
        raise NameTaken(f"A schedule named {schedule.name!r} exists already.") from None
    return schedule


# -- firing ----------------------------------------------------------------------------------


def tick(now: datetime | None = None) -> int:
    """Fire the due schedules, at most once per ``JOBS_SCHEDULE_TICK_SECONDS`` in a process.

    Return how many jobs were created. Passing ``now`` skips the rate limit and
    the creation of the built-in schedules.
    """
    global _last_tick
    if now is None:
        clock = time.monotonic()
        if clock - _last_tick < conf.SCHEDULE_TICK_SECONDS:
            return 0
        _last_tick = clock
        ensure_builtin_schedules()
    now = now or timezone.now()
    created = 0
    for schedule in Schedule.objects.filter(enabled=True, next_fire_at__lte=now).order_by(
        "next_fire_at"
    ):
        try:
            created += fire(schedule, now=now)
        except DatabaseError:
            # One schedule's trouble must not hold up the others; it is retried next tick.
            logger.exception("schedule=%s fire failed", schedule.name)
    return created


def fire(schedule: Schedule, *, now: datetime) -> int:
    """Create the jobs of the due fire times of ``schedule``; return how many this call made."""
    created = 0
    times = due_times(schedule, now)
    try:
        for fire_at in times:
            job = lifecycle.enqueue_fire(schedule_id=schedule.pk, fire_at=fire_at, **_job(schedule))
            if job is not None:
                created += 1
                logger.info("schedule=%s fire_at=%s job=%s", schedule.name, fire_at, job.pk)
    except InvalidJob as exc:
        # Valid when saved, but the rules changed since (a task removed, a host no longer
        # allowed): nothing is queued, the timetable moves on.
        logger.error("schedule=%s cannot fire: %s", schedule.name, exc)
    if times:
        _advance(schedule, last=times[-1], following=next_after(schedule, now))
    return created


def _job(schedule: Schedule) -> dict[str, Any]:
    spec: dict[str, Any] = {"task": schedule.task, "payload": schedule.payload}
    if schedule.queue:
        spec["queue"] = schedule.queue
    if schedule.priority is not None:
        spec["priority"] = schedule.priority
    return spec


def _advance(schedule: Schedule, *, last: datetime, following: datetime) -> None:
    """Move the schedule's timetable forward; never back, whoever got there first."""
    Schedule.objects.filter(pk=schedule.pk, enabled=True, next_fire_at__lt=following).update(
        next_fire_at=following
    )
    Schedule.objects.filter(Q(last_fire_at__isnull=True) | Q(last_fire_at__lt=last)).filter(
        pk=schedule.pk
    ).update(last_fire_at=last)


def run_now(*, schedule_id: int) -> Job:
    """Create a job from the schedule at once, outside its timetable. Raises ``InvalidJob``."""
    schedule = Schedule.objects.get(pk=schedule_id)
    job, _ = lifecycle.enqueue(**_job(schedule))
    logger.info("schedule=%s run_now job=%s", schedule.name, job.pk)
    return job


def set_enabled(*, schedule_id: int, enabled: bool) -> bool:
    """Enable (timetable restarts from now: nothing missed fires) or disable a schedule.

    Return whether it changed. Raises ``InvalidSchedule`` when enabling one that
    ``check`` refuses (saved before the rules it breaks).
    """
    schedule = Schedule.objects.get(pk=schedule_id)
    if schedule.enabled == enabled:
        return False
    if enabled:
        check(schedule)
    schedule.enabled = enabled
    reschedule(schedule)
    return bool(
        Schedule.objects.filter(pk=schedule_id, enabled=not enabled).update(
            enabled=enabled, next_fire_at=schedule.next_fire_at, updated_at=timezone.now()
        )
    )


def ensure_builtin_schedules() -> None:
    """Create the ``jobs.purge`` retention schedule once, unless ``JOBS_PURGE_CRON`` is off.

    An existing one is left as the operator set it (disable it to stop purging).
    """
    global _builtins_ready
    if _builtins_ready:
        return
    cron = conf.PURGE_CRON
    if cron.strip().lower() != "off" and not Schedule.objects.filter(name=PURGE_SCHEDULE).exists():
        schedule = Schedule(name=PURGE_SCHEDULE, cron=cron, task="jobs.purge")
        try:
            schedule.full_clean(validate_unique=False)
            reschedule(schedule)
            with transaction.atomic():
                schedule.save(force_insert=True)
        except ValidationError as exc:
            logger.error("JOBS_PURGE_CRON=%r is invalid, no purge schedule: %s", cron, exc)
        except IntegrityError:
            pass  # another process created it first
    _builtins_ready = True
