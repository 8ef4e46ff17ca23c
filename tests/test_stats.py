"""GET /api/stats: counts by status and queue, lag, recent throughput, live workers."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job
from jobs.models import Worker as WorkerRow
from jobs.observability import stats


def finish(job, *, ok: bool = True, ago: timedelta | None = None) -> None:
    """Claim ``job`` and record success (or a final failure), ``ago`` in the past."""
    (claimed,) = lifecycle.claim(worker_id="w1", queues=[job.queue])
    assert claimed.pk == job.pk
    if ok:
        lifecycle.succeed(job=claimed, worker_id="w1", result=1)
    else:
        lifecycle.fail(job=claimed, worker_id="w1", error="boom", retry=False)
    if ago:
        Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - ago)


def register_worker(worker_id: str, *, beat_ago: timedelta) -> None:
    now = timezone.now()
    WorkerRow.objects.create(
        id=worker_id, hostname="h", pid=1, started_at=now, last_heartbeat_at=now - beat_ago
    )


@pytest.fixture
def known_mix(make_job):
    """Queue "a": 2 queued (one 2 minutes old), 1 deferred, 1 processing.

    Queue "b": 2 done (one 10 minutes ago), 1 failed, 1 cancelled. One live worker, one dead.
    """
    old = make_job(queue="a")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    make_job(queue="a")
    make_job(queue="a", run_after=timezone.now() + timedelta(hours=1))
    make_job(queue="a", priority=100)
    lifecycle.claim(worker_id="w1", queues=["a"])  # the priority job: processing
    finish(make_job(queue="b"))
    finish(make_job(queue="b"), ago=timedelta(minutes=10))
    finish(make_job(queue="b"), ok=False)
    lifecycle.cancel(job_id=make_job(queue="b").pk)
    register_worker("alive", beat_ago=timedelta(seconds=1))
    register_worker("dead", beat_ago=timedelta(hours=1))


def test_stats_need_authentication(anon):
    response = anon.get("/api/stats")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


def test_stats_after_a_known_mix_of_jobs(api, known_mix):
    response = api.get("/api/stats")
    assert response.status_code == 200
    body = response.json()
    counts = {status: entry["count"] for status, entry in body["statuses"].items()}
    assert counts == {
        "queued": 3,
        "processing": 1,
        "waiting": 0,
        "done": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert all(entry["exact"] for entry in body["statuses"].values())
    a, b = body["queues"]["a"], body["queues"]["b"]
    assert (a["queued"], a["processing"]) == (3, 1)
    assert 119 <= a["lag_seconds"] < 180  # the oldest due job; the deferred one is not late
    assert (b["queued"], b["processing"], b["lag_seconds"]) == (0, 0, None)
    assert b["finished"] == {
        "last_1m": {"done": 1, "failed": 1},
        "last_5m": {"done": 1, "failed": 1},
        "last_60m": {"done": 2, "failed": 1},
    }
    assert body["finished"] == b["finished"]
    assert a["finished"]["last_60m"] == {"done": 0, "failed": 0}
    assert body["workers"] == {"alive": 1}
    assert api.get("/api/stats/").status_code == 200  # with the trailing slash too


def test_lag_is_zero_when_only_deferred_jobs_wait(api, make_job):
    make_job(queue="later", run_after=timezone.now() + timedelta(minutes=5))
    queue = api.get("/api/stats").json()["queues"]["later"]
    assert (queue["queued"], queue["lag_seconds"]) == (1, 0.0)


def test_the_number_of_queries_does_not_grow_with_the_data(
    known_mix, make_job, django_assert_num_queries
):
    # queued, processing and waiting per queue, the lag of queue "a" (the one with queued
    # jobs), recent per queue, 3 capped finished counts, live workers
    with django_assert_num_queries(9):
        stats.snapshot()
    for _ in range(20):
        make_job(queue="a")
        finish(make_job(queue="b"))
    with django_assert_num_queries(9):
        stats.snapshot()


def test_finished_counts_past_the_limit_are_estimates_on_postgresql(api, make_job, settings):
    settings.JOBS_STATS_EXACT_LIMIT = 3
    for _ in range(3):
        finish(make_job(queue="c"))
    finish(make_job(queue="c"), ok=False)
    statuses = api.get("/api/stats").json()["statuses"]
    assert statuses["failed"] == {"count": 1, "exact": True}
    if connection.vendor == "postgresql":
        assert statuses["done"]["exact"] is False and statuses["done"]["count"] >= 3
    else:
        assert statuses["done"] == {"count": 3, "exact": True}
