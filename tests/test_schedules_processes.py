"""Schedules fired by real ``runworker`` processes racing on the same database."""

import signal
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count

from jobs import schedules
from jobs.models import Job, Schedule, ScheduleFire
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

# Every worker looks for due schedules every 0.1 s, so all three race for each fire time.
WORKER_ENV = {
    "JOBS_SCHEDULE_TICK_SECONDS": "0.1",
    "JOBS_PURGE_CRON": "off",
    "JOBS_SCHEDULE_CATCH_UP_MAX": "20",
}


def create(name, cron, path, *, catch_up=False, next_fire_at=None):
    schedule = Schedule(
        name=name,
        cron=cron,
        task="test.append",
        payload={"path": str(path), "line": name},
        catch_up=catch_up,
    )
    schedule.full_clean()
    schedules.reschedule(schedule)
    if next_fire_at is not None:
        schedule.next_fire_at = next_fire_at
    schedule.save()
    return schedule


def start(processes, n=3):
    """Start ``n`` workers and wait until each serves (its signal handlers are set)."""
    workers = [processes.worker(env=WORKER_ENV) for _ in range(n)]
    for proc in workers:
        wait_for(lambda proc=proc: "concurrency=1 started" in processes.output(proc), timeout=60)
    return workers


def stop(workers, processes):
    """SIGTERM every worker: each stops gracefully and exits 0."""
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(timeout=20) == 0, processes.output(proc)


def fire_times(schedule, **filters):
    fires = ScheduleFire.objects.filter(schedule=schedule, **filters)
    return sorted(fires.values_list("fire_at", flat=True))


def assert_one_job_per_fire_time(schedule):
    fires = ScheduleFire.objects.filter(schedule=schedule)
    assert not fires.filter(job__isnull=True).exists()
    duplicates = fires.values("fire_at").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()
    assert Job.objects.filter(payload__line=schedule.name).count() == fires.count()


def test_three_workers_create_exactly_one_job_per_second(processes, tmp_path):
    """A schedule firing every second for about 10 s: every second fires, each exactly once."""
    out = tmp_path / "runs.txt"
    schedule = create("every-second", "* * * * * *", out, catch_up=True)
    workers = start(processes)
    wait_for(lambda: ScheduleFire.objects.filter(schedule=schedule).count() >= 10, timeout=40)
    schedules.set_enabled(schedule_id=schedule.pk, enabled=False)
    wait_for(lambda: not Job.objects.filter(status__in=["queued", "processing"]).exists())
    stop(workers, processes)

    times = fire_times(schedule)
    assert len(times) >= 10
    assert times == [times[0] + timedelta(seconds=i) for i in range(len(times))]
    assert_one_job_per_fire_time(schedule)
    assert out.read_text().splitlines() == ["every-second"] * len(times)


def test_restarted_workers_do_not_replay_missed_fire_times(processes, tmp_path):
    """Workers stopped across several fire times come back without a catch-up storm."""
    out = tmp_path / "runs.txt"
    second = create("every-second", "* * * * * *", out)
    workers = start(processes)
    wait_for(lambda: len(fire_times(second)) >= 2)
    stop(workers, processes)
    last_before = fire_times(second)[-1]

    # Real downtime of several fire times for the every-second schedule, and a
    # simulated three hours for two every-minute ones.
    wait_for(lambda: datetime.now(UTC) > last_before + timedelta(seconds=4), timeout=10)
    hours_ago = datetime.now(UTC) - timedelta(hours=3)
    minute = create("every-minute", "* * * * *", out, next_fire_at=hours_ago)
    replay = create("replay", "* * * * *", out, catch_up=True, next_fire_at=hours_ago)
    restarted_at = datetime.now(UTC)
    workers = start(processes)
    wait_for(lambda: len(fire_times(second, fire_at__gt=restarted_at)) >= 2)
    stop(workers, processes)

    missed = fire_times(second, fire_at__gt=last_before, fire_at__lte=restarted_at)
    assert len(missed) <= 1  # at most the latest missed second, never all four or more
    # One job for the latest of the 180 missed minutes (two if a minute boundary
    # passed while the workers ran), none for the older ones.
    assert 1 <= len(fire_times(minute)) <= 2
    assert not fire_times(minute, fire_at__lt=restarted_at - timedelta(minutes=1))
    # Replays, but only JOBS_SCHEDULE_CATCH_UP_MAX of the 180 missed minutes.
    assert 20 <= len(fire_times(replay)) <= 21
    assert not fire_times(replay, fire_at__lt=restarted_at - timedelta(minutes=21))
    for schedule in (second, minute, replay):
        assert_one_job_per_fire_time(schedule)
