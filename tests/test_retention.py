"""Retention: old finished jobs go in bounded batches; everything else stays."""

import os
import re
import signal
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import lifecycle, retention, runner
from jobs.conf import parse_age
from jobs.models import Job, JobAttempt, Schedule, ScheduleFire, Worker
from jobs.worker.loop import Worker as WorkerLoop
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

WORKER = "w-test"
DELETE_JOBS = "DELETE FROM " + connection.ops.quote_name("jobs_job")  # noqa: S608 (a constant)
UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def finished(status, *, days, n=1):
    """Create ``n`` jobs through the lifecycle ending in ``status``, finished ``days`` ago."""
    jobs = lifecycle.enqueue_many([{"task": "echo", "max_attempts": 1}] * n)
    claimed = lifecycle.claim(worker_id=WORKER, limit=n)
    assert len(claimed) == n
    for job in claimed:
        if status == "done":
            lifecycle.succeed(job=job, worker_id=WORKER)
        elif status == "failed":
            lifecycle.fail(job=job, worker_id=WORKER, error="boom", retry=False)
        else:
            lifecycle.cancel(job_id=job.pk)
    ids = [job.pk for job in jobs]
    Job.objects.filter(pk__in=ids).update(finished_at=timezone.now() - timedelta(days=days))
    return ids


def unfinished(status):
    job, _ = lifecycle.enqueue(task="echo")
    if status == "processing":
        lifecycle.claim(worker_id=WORKER)
    # Even with an ancient timestamp, an unfinished job is never purged.
    old = timezone.now() - timedelta(days=365)
    Job.objects.filter(pk=job.pk).update(finished_at=old, created_at=old, updated_at=old)
    return job.pk


def test_purge_deletes_only_finished_jobs_past_their_age():
    gone = finished("done", days=8) + finished("failed", days=31) + finished("cancelled", days=8)
    kept = (
        finished("done", days=6)
        + finished("failed", days=8)
        + finished("cancelled", days=6)
        + [unfinished("queued"), unfinished("processing")]
    )
    counts = retention.purge()
    assert counts == {"done": 1, "failed": 1, "cancelled": 1}
    assert set(Job.objects.values_list("pk", flat=True)) == set(kept)
    assert not Job.objects.filter(pk__in=gone).exists()


def test_purge_deletes_the_attempt_history_with_the_job():
    old = finished("failed", days=31)
    young = finished("failed", days=1)
    assert JobAttempt.objects.filter(job_id__in=old + young).count() == 2
    retention.purge()
    assert list(JobAttempt.objects.values_list("job_id", flat=True)) == young


def test_purge_deletes_in_bounded_batches():
    finished("done", days=8, n=25)
    with CaptureQueriesContext(connection) as queries:
        assert retention.purge(statuses=["done"], batch_size=10) == {"done": 25}
    deletes = [q["sql"] for q in queries if q["sql"].startswith(DELETE_JOBS)]
    assert [len(set(UUID.findall(sql))) for sql in deletes] == [10, 10, 5]
    assert not Job.objects.exists()


def test_batch_size_setting_bounds_each_delete(settings):
    settings.JOBS_PURGE_BATCH_SIZE = 4
    finished("done", days=8, n=9)
    with CaptureQueriesContext(connection) as queries:
        retention.purge(statuses=["done"])
    deletes = [q for q in queries if q["sql"].startswith(DELETE_JOBS)]
    assert len(deletes) == 3  # 4 + 4 + 1


def test_dry_run_counts_and_deletes_nothing():
    finished("done", days=8, n=3)
    assert retention.purge(dry_run=True) == {"done": 3, "failed": 0, "cancelled": 0}
    assert Job.objects.count() == 3


def test_older_than_and_statuses_override_the_settings():
    finished("done", days=2)
    failed = finished("failed", days=2)
    assert retention.purge(statuses=["done"], older_than=timedelta(days=1)) == {"done": 1}
    assert list(Job.objects.values_list("pk", flat=True)) == failed


def test_unfinished_statuses_cannot_be_purged():
    with pytest.raises(ValueError, match="only finished"):
        retention.purge(statuses=["queued"])


def test_never_keeps_a_status_forever(settings):
    settings.JOBS_RETAIN_DONE = "never"
    finished("done", days=3650)
    assert "done" not in retention.purge()
    assert Job.objects.count() == 1


def test_purge_drops_old_fire_records_and_keeps_recent_ones():
    schedule = Schedule.objects.create(name="s", cron="* * * * *", task="echo")
    now = datetime.now(UTC)
    old = ScheduleFire.objects.create(schedule=schedule, fire_at=now - timedelta(days=2))
    recent = ScheduleFire.objects.create(schedule=schedule, fire_at=now - timedelta(hours=1))
    retention.purge()
    assert list(ScheduleFire.objects.all()) == [recent]
    assert old.pk not in ScheduleFire.objects.values_list("pk", flat=True)


def test_a_fire_record_outlives_its_purged_job():
    schedule = Schedule.objects.create(name="s", cron="* * * * *", task="echo")
    [job_id] = finished("done", days=8)
    fire = ScheduleFire.objects.create(
        schedule=schedule, fire_at=timezone.now() - timedelta(hours=1), job_id=job_id
    )
    retention.purge()
    fire.refresh_from_db()
    assert fire.job_id is None


def test_the_builtin_purge_task_purges():
    finished("done", days=8, n=2)
    job, _ = lifecycle.enqueue(task="jobs.purge")
    job = runner.run_now(job_id=job.pk)
    assert job.status == "done"
    assert job.result == {"done": 2, "failed": 0, "cancelled": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("90", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        (3600, timedelta(hours=1)),
        ("never", None),
    ],
)
def test_parse_age(value, expected):
    assert parse_age(value) == expected


@pytest.mark.parametrize("value", ["soon", "7 days", "-1d", "d"])
def test_parse_age_rejects_nonsense(value):
    with pytest.raises(ValueError, match="not an age"):
        parse_age(value)


def test_purgejobs_command():
    finished("done", days=2, n=2)
    finished("failed", days=2)
    out = StringIO()
    call_command("purgejobs", "--dry-run", "--older-than", "1d", stdout=out)
    assert "done: would delete 2" in out.getvalue()
    assert Job.objects.count() == 3
    out = StringIO()
    call_command("purgejobs", "--older-than", "1d", "--status", "done", stdout=out)
    assert "done: deleted 2" in out.getvalue() and "total: deleted 2" in out.getvalue()
    assert list(Job.objects.values_list("status", flat=True)) == ["failed"]


@pytest.mark.parametrize(
    "args",
    [
        ["--status", "queued"],
        ["--older-than", "soon"],
        ["--older-than", "never"],
        ["--batch-size", "0"],
    ],
)
def test_purgejobs_rejects_bad_arguments(args):
    with pytest.raises(CommandError):
        call_command("purgejobs", *args)


# -- the registry rows of dead workers (issue 12, point 12) ----------------------------------


def registered(worker_id: str, beat_ago: timedelta) -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        id=worker_id,
        hostname="h",
        pid=1,
        started_at=now - beat_ago,
        last_heartbeat_at=now - beat_ago,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("setting", "kept"),
    [
        (None, {"alive", "dead-1h"}),  # the default: a day
        ("30m", {"alive"}),
        ("never", {"alive", "dead-1h", "dead-2d"}),
        ("1s", {"alive"}),  # never less than a lease (30 s): "alive" beat 10 s ago
    ],
)
def test_worker_housekeeping_removes_workers_dead_longer_than_the_setting(settings, setting, kept):
    """78 kill -9 leave 78 rows no one removes; a running worker's housekeeping does."""
    if setting is not None:
        settings.JOBS_RETAIN_DEAD_WORKERS = setting
    registered("alive", timedelta(seconds=10))
    registered("dead-1h", timedelta(hours=1))
    registered("dead-2d", timedelta(days=2))
    WorkerLoop(worker_id="me", burst=True, install_signal_handlers=False).run()
    assert set(Worker.objects.values_list("pk", flat=True)) == kept  # "me" left cleanly


@pytest.mark.slow
def test_kill_9_leaves_a_row_that_a_running_worker_removes_and_a_live_one_comes_back(processes):
    """The issue's case with real processes: a worker killed with SIGKILL leaves its row;
    another worker's housekeeping removes it once it is older than the setting. A worker
    whose row was removed (paused past the age) registers again at its next heartbeat."""
    killed = processes.worker("--worker-id", "killed")
    wait_for(lambda: Worker.objects.filter(pk="killed").exists())
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    fast = {"JOBS_LEASE_SECONDS": "1", "JOBS_RETAIN_DEAD_WORKERS": "1s"}
    processes.worker("--worker-id", "sweeper", env=fast)
    wait_for(lambda: not Worker.objects.filter(pk="killed").exists())
    Worker.objects.filter(pk="sweeper").delete()
    wait_for(lambda: Worker.objects.filter(pk="sweeper").exists())
