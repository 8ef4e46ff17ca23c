"""The dashboard and the worker registry admin."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import lifecycle
from jobs.admin import changelist, chart, dashboard
from jobs.models import Job, Status, Worker
from jobs.observability import stats
from tests.admin_helpers import CHANGELIST, shown
from tests.helpers import one_of_each, put_in

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:jobs_dashboard")


def worker(worker_id: str, *, beat_ago: float = 0, **fields) -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        id=worker_id,
        hostname="host-1",
        pid=1234,
        started_at=now - timedelta(hours=1),
        last_heartbeat_at=now - timedelta(seconds=beat_ago),
        **fields,
    )


def test_admin_index_links_to_the_dashboard(admin_client):
    assert DASHBOARD in shown(admin_client.get(reverse("admin:index")))
    assert DASHBOARD in shown(admin_client.get(CHANGELIST))


def test_dashboard_shows_counts_chart_lag_failure_rate_and_workers(admin_client, make_job):
    jobs = one_of_each(make_job)  # processing is held by w1
    put_in(Status.FAILED, make_job)
    waiting = make_job(queue="mail")
    Job.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    worker("w1", queues=["default"])
    worker("w-dead", beat_ago=3600)
    page = shown(admin_client.get(DASHBOARD))
    for status in Status:
        assert f'id="count-{status}"' in page
    assert re.search(r'id="count-failed">\s*<div class="value">2<', page)
    assert '<svg class="jobs-chart"' in page
    assert page.count('class="bar-done"') == 1 and page.count('class="bar-failed"') == 1
    assert "67%" in page  # 2 failed of 3 finished in the last hour
    assert re.search(r'id="queue-lag">\s*<div class="value">(4|5)\.\d min<', page)
    assert reverse("admin:jobs_job_change", args=[jobs[Status.PROCESSING].pk]) in page
    assert "w-dead" not in page and "(1 dead)" in page
    assert "?queue=mail" in page


def test_dashboard_tells_delayed_jobs_from_lag(admin_client, make_job):
    """Queued jobs whose run-after is later are counted as delayed, per queue and in all,
    and are not lag: with only delayed jobs queued, the lag is none."""
    later = timezone.now() + timedelta(hours=1)
    for _ in range(3):
        make_job(queue="mail", run_after=later)
    page = shown(admin_client.get(DASHBOARD))
    assert re.search(r'id="queue-lag">\s*<div class="value">none<', page)
    assert re.search(r'id="queued-delayed">\s*<div class="value">3<', page)
    make_job(queue="mail")
    context = admin_client.get(DASHBOARD).context
    (row,) = context["queue_depths"]
    assert (row["queue"], row["due"], row["delayed"], row["processing"]) == ("mail", 1, 3, 0)


def test_throughput_buckets_by_minute():
    now = timezone.now().replace(second=30)
    series = dashboard.Throughput()
    assert series.failure_rate is None
    Job.objects.bulk_create(
        [
            Job(task="echo", status=Status.DONE, finished_at=now),
            Job(task="echo", status=Status.DONE, finished_at=now - timedelta(minutes=10)),
            Job(task="echo", status=Status.FAILED, finished_at=now - timedelta(minutes=10)),
            Job(task="echo", status=Status.DONE, finished_at=now - timedelta(hours=2)),
        ]
    )
    series = dashboard.throughput(now)
    assert series.done[-1] == 1 and series.done[-11] == 1 and series.failed[-11] == 1
    assert sum(series.done) == 2 and series.failure_rate == pytest.approx(1 / 3)


def test_dashboard_queries_do_not_grow_with_jobs_or_workers(admin_client, make_job):
    """The same number of queries (at most 20) with 6 jobs and 1 idle worker as with 41
    jobs and 4 workers, 3 of them holding a job."""

    def render() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(DASHBOARD)
        assert response.status_code == 200
        for n in range(Worker.objects.count()):
            assert f"w{n}" in shown(response)
        return len(queries)

    put_in(Status.DONE, make_job)
    for _ in range(5):
        make_job()
    worker("w0")
    small = render()
    Job.objects.all().delete()
    for status in [Status.DONE, Status.FAILED, Status.CANCELLED] * 8:
        put_in(status, make_job)
    for n in range(1, 4):
        worker(f"w{n}")
        make_job()
        lifecycle.claim(worker_id=f"w{n}", limit=1)
    for _ in range(14):
        make_job()
    assert Job.objects.count() == 41
    assert render() == small <= 20


# -- scale helpers ---------------------------------------------------------------------------


def test_paginator_counts_exactly_below_the_estimate_threshold(make_job):
    for _ in range(3):
        make_job()
    assert changelist.EstimatedCountPaginator(Job.objects.all(), 50).count == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="estimates are PostgreSQL's")
def test_changelist_uses_the_estimate_not_count_on_postgresql(admin_client, make_job, monkeypatch):
    make_job()
    make_job()
    monkeypatch.setattr(changelist, "EXACT_COUNT_BELOW", 1)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "≈" in shown(response)  # the count is marked as an estimate
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert any(s.startswith("EXPLAIN") for s in sql)
    counts = [s for s in sql if "COUNT(" in s and "JOBS_JOB" in s]
    assert counts and all("LIMIT" in s for s in counts), counts  # capped, never full


def test_date_hierarchy_offers_every_day_between_first_and_last(make_job):
    first, last = make_job(), make_job()  # the last created now: the range ends today
    start = timezone.now().replace(hour=12) - timedelta(days=3)
    Job.objects.filter(pk=first.pk).update(created_at=start)
    days = changelist._RangeDates(Job.objects.all(), "created_at").datetimes("created_at", "day")
    assert [d.date() for d in days] == [(start + timedelta(days=i)).date() for i in range(4)]
    assert days[-1].date() == last.created_at.date()
    none = changelist._RangeDates(Job.objects.none(), "created_at")
    assert none.datetimes("created_at", "month") == []


def test_selected_period_is_an_index_friendly_range():
    start, end = changelist.selected_period(
        {"created_at__year": "2026", "created_at__month": "12"}, "created_at"
    )
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+00:00",
        "2027-01-01T00:00:00+00:00",
    )
    assert changelist.selected_period({"created_at__year": "x"}, "created_at") is None


# -- the worker registry ---------------------------------------------------------------------

WORKERS = reverse("admin:jobs_worker_changelist")


def test_workers_admin_shows_live_and_dead_with_current_jobs(admin_client, make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w-live")
    worker("w-live", queues=["mail", "default"])
    worker("w-dead", beat_ago=3600)
    page = shown(admin_client.get(WORKERS))
    assert 'class="job-badge worker-live"' in page and 'class="job-badge worker-dead"' in page
    assert reverse("admin:jobs_job_change", args=[job.pk]) in page
    assert "mail, default" in page
    live = admin_client.get(WORKERS, {"state": "live"}).context["cl"].result_list
    assert [w.pk for w in live] == ["w-live"]
    dead = admin_client.get(WORKERS, {"state": "dead"}).context["cl"].result_list
    assert [w.pk for w in dead] == ["w-dead"]


def test_workers_admin_is_read_only(admin_client):
    worker("w1")
    change = reverse("admin:jobs_worker_change", args=["w1"])
    assert 'name="_save"' not in shown(admin_client.get(change))
    assert admin_client.post(change, {"hostname": "x"}).status_code == 403
    assert admin_client.get(reverse("admin:jobs_worker_add")).status_code == 403
    assert admin_client.get(reverse("admin:jobs_worker_delete", args=["w1"])).status_code == 403
    assert Worker.objects.get().hostname == "host-1"


@pytest.mark.parametrize("beat_ago", [12, 45])
def test_workers_admin_says_the_last_heartbeat_in_seconds(admin_client, beat_ago):
    """A worker dead for 45 s (a lease is 30 s) must not read "dead, 0 minutes ago".

    The pages count from when they render: on a loaded machine a few seconds may have
    passed since the beat was written."""

    def seconds_ago(page: str) -> int:
        (ago,) = {int(n) for n in re.findall(r"\b(\d+) s ago", page)}
        assert beat_ago <= ago <= beat_ago + 5, page
        return ago

    worker("w1", beat_ago=beat_ago)
    page = shown(admin_client.get(WORKERS))
    assert "0 minutes" not in page
    seconds_ago(page)
    seconds_ago(shown(admin_client.get(reverse("admin:jobs_worker_change", args=["w1"]))))


def test_view_site_leads_to_a_page_that_exists(admin_client):
    """The admin header's "View site" points at the API docs, not at "/" (a 404 here)."""
    page = shown(admin_client.get(reverse("admin:index")))
    (site,) = re.findall(r'<a href="([^"]*)">View site</a>', page)
    assert site == reverse("docs")
    assert admin_client.get(site).status_code == 200


def test_workers_list_fits_and_says_times_with_seconds_and_zone(admin_client):
    worker("w1", beat_ago=5)
    cl = admin_client.get(WORKERS).context["cl"]
    assert "hostname" not in cl.list_display and "pid" not in cl.list_display
    assert re.search(r"\d\d:\d\d:\d\d UTC", shown(admin_client.get(WORKERS)))


# -- the chart and live refresh ----------------------------------------------------------------


def test_chart_axis_has_round_ticks_and_its_unit():
    svg = str(chart.svg([3] * 59 + [7], [0] * 59 + [1]))
    ticks = [int(v) for v in re.findall(r'class="label">(\d+)</text>', svg)]
    assert ticks == [0, 2, 4, 6, 8]  # the peak (8) fits: no clipping
    assert "jobs/min" in svg and 'class="cut"' not in svg


def test_a_burst_is_clipped_and_marked_with_its_value_not_flattening_the_rest():
    done = [10] * 59 + [5000]
    axis = chart.scale(done)
    assert axis.clipped and axis.top == 15 and axis.step == 5
    svg = str(chart.svg(done, [0] * 60))
    assert re.search(r'class="label peak">5000<', svg)
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="bar-done"', svg)]
    # An ordinary minute is two thirds of the axis high, not 1/500 of it.
    assert heights[0] == pytest.approx(heights[-1] * 10 / 15, rel=0.01)


def test_nice_steps():
    assert [chart.nice_step(v) for v in (1, 4, 9, 40, 70, 300, 1900)] == [1, 1, 5, 10, 20, 100, 500]


def test_dashboard_offers_the_chart_as_a_table_and_refreshes_itself(admin_client):
    now = timezone.now()
    Job.objects.create(task="echo", status=Status.DONE, finished_at=now - timedelta(minutes=2))
    page = shown(admin_client.get(DASHBOARD))
    table = re.search(r'<details id="throughput-table">.*?</details>', page, re.S).group(0)
    assert table.count('<tr><th scope="row">') == 60
    minute = timezone.localtime(now - timedelta(minutes=2)).strftime("%H:%M")
    assert re.search(rf"<th scope=\"row\">{minute}</th><td>1</td><td>0</td>", table)
    assert 'data-live="5"' in page and "jobs/live.js" in page and "Updated at" in page


def test_an_unfinished_job_s_page_refreshes_itself_a_finished_one_stops(admin_client, make_job):
    job = make_job()
    page = shown(admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])))
    assert 'id="job-live" data-live="5"' in page and "data-live-stop" not in page
    assert "jobs/live.js" in page
    lifecycle.cancel(job_id=job.pk)
    page = shown(admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])))
    assert 'data-live-stop="the job is cancelled"' in page and "jobs/live.js" not in page


def test_queued_counts_past_the_cap_are_estimated_on_postgresql(
    admin_client, make_job, monkeypatch
):
    """Each queue's queued jobs are counted up to the cap only (a capped count per queue,
    never a count of the whole backlog); past it PostgreSQL's estimate stands, marked ≈.
    Other databases count exactly."""
    for queue in ["a", "a", "a", "b"]:
        make_job(queue=queue)
    monkeypatch.setattr(stats, "QUEUED_EXACT_LIMIT", 2)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    snapshot = stats.snapshot(cap=2)
    if connection.vendor == "postgresql":
        assert snapshot["queues"]["a"]["estimated"] == ["queued"]
        assert "estimated" not in snapshot["queues"]["b"]
        assert snapshot["statuses"]["queued"]["exact"] is False
        assert "≈" in shown(response)
        counts = [
            q["sql"].upper()
            for q in queries.captured_queries
            if "COUNT(" in q["sql"].upper()
            and "'QUEUED'" in q["sql"].upper()
            and "COALESCE" not in q["sql"].upper()  # delayed jobs: a range of the due index
        ]
        assert counts and all("LIMIT" in sql for sql in counts), counts
    else:
        assert snapshot["queues"]["a"]["queued"] == 3
        assert snapshot["statuses"]["queued"] == {"count": 4, "exact": True}
    assert stats.snapshot()["statuses"]["queued"] == {"count": 4, "exact": True}  # the API's
