"""Schedules: fire times, exactly-once firing, downtime without catch-up storms."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from jobs import lifecycle, schedules
from jobs.models import Job, Schedule, ScheduleFire

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)


def make_schedule(now=T0, **fields):
    fields = {"name": "every-minute", "cron": "* * * * *", "task": "echo", **fields}
    schedule = Schedule(**fields)
    schedule.full_clean()
    schedules.reschedule(schedule, now=now)
    schedule.save()
    return schedule


def fired(schedule):
    return list(
        ScheduleFire.objects.filter(schedule=schedule)
        .order_by("fire_at")
        .values_list("fire_at", flat=True)
    )


def test_a_new_schedule_first_fires_at_its_next_cron_time():
    schedule = make_schedule()
    assert schedule.next_fire_at == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    assert schedules.tick(now=T0) == 0
    assert schedules.tick(now=T0 + timedelta(seconds=30)) == 1
    assert fired(schedule) == [datetime(2026, 1, 1, 12, 1, tzinfo=UTC)]


def test_each_fire_time_creates_one_job_with_the_schedule_settings():
    schedule = make_schedule(payload={"n": 1}, queue="cron", priority=5)
    for minute in range(1, 4):
        schedules.tick(now=T0 + timedelta(minutes=minute))
        schedules.tick(now=T0 + timedelta(minutes=minute))  # again: nothing new
    fires = ScheduleFire.objects.filter(schedule=schedule).select_related("job")
    assert [f.fire_at.minute for f in fires.order_by("fire_at")] == [1, 2, 3]
    assert {(f.job.task, f.job.queue, f.job.priority) for f in fires} == {("echo", "cron", 5)}
    assert Job.objects.count() == 3
    schedule.refresh_from_db()
    assert schedule.last_fire_at == datetime(2026, 1, 1, 12, 3, tzinfo=UTC)
    assert schedule.next_fire_at == datetime(2026, 1, 1, 12, 4, tzinfo=UTC)


def test_the_database_refuses_a_second_job_for_the_same_fire_time():
    schedule = make_schedule()
    moment = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    first = lifecycle.enqueue_fire(schedule_id=schedule.pk, fire_at=moment, task="echo")
    second = lifecycle.enqueue_fire(schedule_id=schedule.pk, fire_at=moment, task="echo")
    assert first is not None and second is None
    assert Job.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleFire.objects.create(schedule=schedule, fire_at=moment)


def test_workers_with_a_stale_view_of_the_schedule_still_fire_once():
    """Two processes read the schedule before either fired it: one job."""
    make_schedule()
    now = T0 + timedelta(minutes=1)
    stale_a, stale_b = list(Schedule.objects.all()), list(Schedule.objects.all())
    made = schedules.fire(stale_a[0], now=now) + schedules.fire(stale_b[0], now=now)
    assert made == 1 and Job.objects.count() == 1


def test_after_downtime_only_the_latest_missed_time_fires():
    schedule = make_schedule()
    assert schedules.tick(now=T0 + timedelta(hours=3)) == 1
    assert fired(schedule) == [datetime(2026, 1, 1, 15, 0, tzinfo=UTC)]
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 1, 1, 15, 1, tzinfo=UTC)


def test_catch_up_replays_missed_times_up_to_the_bound(settings):
    settings.JOBS_SCHEDULE_CATCH_UP_MAX = 50
    schedule = make_schedule(catch_up=True)
    assert schedules.tick(now=T0 + timedelta(minutes=10)) == 10
    assert schedules.tick(now=T0 + timedelta(hours=5)) == 50
    times = fired(schedule)
    assert times[:10] == [datetime(2026, 1, 1, 12, m, tzinfo=UTC) for m in range(1, 11)]
    assert times[-1] == datetime(2026, 1, 1, 17, 0, tzinfo=UTC)
    assert times[10] == datetime(2026, 1, 1, 16, 11, tzinfo=UTC)


def test_a_disabled_schedule_never_fires_and_reenabling_skips_the_missed_times():
    schedule = make_schedule()
    assert schedules.set_enabled(schedule_id=schedule.pk, enabled=False)
    assert not schedules.set_enabled(schedule_id=schedule.pk, enabled=False)
    schedule.refresh_from_db()
    assert schedule.next_fire_at is None
    assert schedules.tick(now=T0 + timedelta(days=1)) == 0
    assert schedules.set_enabled(schedule_id=schedule.pk, enabled=True)
    schedule.refresh_from_db()
    assert schedule.next_fire_at > datetime.now(UTC)


def test_cron_is_evaluated_in_the_schedule_time_zone():
    schedule = make_schedule(cron="0 9 * * *", timezone="America/New_York")
    assert schedule.next_fire_at == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)  # 09:00 EST


def test_six_fields_put_seconds_first():
    schedule = make_schedule(cron="*/10 * * * * *")
    assert schedule.next_fire_at == datetime(2026, 1, 1, 12, 0, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cron", "* * * *"),
        ("cron", "61 * * * *"),
        ("cron", "* * * * * * *"),
        ("timezone", "Mars/Olympus"),
        ("timezone", "../etc"),
        ("priority", 101),
    ],
)
def test_invalid_schedules_are_rejected_with_a_message(field, value):
    with pytest.raises(ValidationError) as info:
        Schedule(**{"name": "x", "cron": "* * * * *", "task": "echo", field: value}).full_clean()
    assert field in info.value.message_dict


def test_a_schedule_whose_task_disappeared_logs_and_moves_on(caplog):
    schedule = make_schedule()
    Schedule.objects.filter(pk=schedule.pk).update(task="gone")
    assert schedules.tick(now=T0 + timedelta(minutes=1)) == 0
    assert "cannot fire" in caplog.text
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 1, 1, 12, 2, tzinfo=UTC)
    assert not ScheduleFire.objects.exists()


def test_run_now_queues_a_job_outside_the_timetable():
    schedule = make_schedule(payload="now")
    job = schedules.run_now(schedule_id=schedule.pk)
    assert (job.task, job.payload, job.status) == ("echo", "now", "queued")
    assert not ScheduleFire.objects.exists()


def test_deleting_a_fired_job_keeps_its_fire_time_taken():
    schedule = make_schedule()
    schedules.tick(now=T0 + timedelta(minutes=1))
    Job.objects.all().delete()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=T0)
    assert schedules.tick(now=T0 + timedelta(minutes=1)) == 0
    assert ScheduleFire.objects.get().job is None


def test_tick_is_cheap_when_nothing_is_due(django_assert_num_queries):
    make_schedule()
    with django_assert_num_queries(1):
        assert schedules.tick(now=T0) == 0


def test_tick_is_rate_limited_per_process(settings, monkeypatch, django_assert_num_queries):
    settings.JOBS_SCHEDULE_TICK_SECONDS = 3600
    settings.JOBS_PURGE_CRON = "off"
    monkeypatch.setattr(schedules, "_last_tick", float("-inf"))
    schedule = make_schedule(now=datetime.now(UTC) - timedelta(minutes=5))
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=T0)
    assert schedules.tick() == 1
    with django_assert_num_queries(0):
        assert schedules.tick() == 0  # within the interval: not even a query


def test_the_builtin_purge_schedule_is_created_once(settings, monkeypatch):
    settings.JOBS_PURGE_CRON = "*/5 * * * *"
    monkeypatch.setattr(schedules, "_builtins_ready", False)
    schedules.ensure_builtin_schedules()
    monkeypatch.setattr(schedules, "_builtins_ready", False)
    schedules.ensure_builtin_schedules()
    purge = Schedule.objects.get(name=schedules.PURGE_SCHEDULE)
    assert (purge.task, purge.cron, purge.enabled) == ("jobs.purge", "*/5 * * * *", True)
    assert purge.next_fire_at is not None


def test_the_worker_fires_due_schedules_and_survives_a_failing_tick(
    transactional_db, monkeypatch, caplog
):
    from jobs.worker.loop import Worker

    monkeypatch.setattr(schedules, "_last_tick", float("-inf"))
    monkeypatch.setattr(schedules, "_builtins_ready", True)
    schedule = make_schedule()
    worker = Worker(burst=True, install_signal_handlers=False, worker_id="w-sched")
    assert worker.run() == 1  # the job the schedule created, run at once
    assert ScheduleFire.objects.get(schedule=schedule).job.status == "done"

    def broken(now=None):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(schedules, "tick", broken)
    lifecycle.enqueue(task="echo")
    assert Worker(burst=True, install_signal_handlers=False).run() == 1
    assert "schedule tick failed" in caplog.text


def test_an_invalid_purge_cron_is_logged_and_creates_nothing(settings, monkeypatch, caplog):
    settings.JOBS_PURGE_CRON = "every hour"
    monkeypatch.setattr(schedules, "_builtins_ready", False)
    schedules.ensure_builtin_schedules()
    assert not Schedule.objects.exists()
    assert "JOBS_PURGE_CRON" in caplog.text


def test_schedules_admin_shows_cron_unbroken_and_fire_times_in_their_zone(admin_client):
    make_schedule(name="nightly", cron="0 3 * * *", timezone="Europe/Paris")
    from django.urls import reverse

    page = admin_client.get(reverse("admin:jobs_schedule_changelist")).content.decode()
    assert '<code class="job-cron">0 3 * * *</code>' in page
    assert "2026-01-02 03:00:00 CET" in page  # 03:00 Paris time, named as such
