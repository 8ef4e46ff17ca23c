"""The failures view (failed jobs grouped by cause and task), the list's error and
run-after columns and its "scheduled" filter."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from jobs import lifecycle
from jobs.admin import failures
from jobs.models import Job, Status
from tests.admin_helpers import CHANGELIST, act, shown

pytestmark = pytest.mark.django_db

FAILURES = reverse("admin:jobs_failures")


def fail_with(make_job, error: str, *, task: str = "echo", retry: bool = False) -> Job:
    """A job whose (only) attempt failed with ``error``; queued again when ``retry``."""
    job = make_job(task=task, max_attempts=2 if retry else 1)
    (claimed,) = lifecycle.claim(worker_id="w1")
    assert claimed.pk == job.pk
    trace = f'Traceback (most recent call last):\n  File "shop/tasks.py", line 3\n{error}'
    lifecycle.fail(job=claimed, worker_id="w1", error=error, traceback=trace)
    return Job.objects.get(pk=job.pk)


def test_failures_are_grouped_by_cause_and_task_largest_first(make_job):
    for order in range(3):
        fail_with(make_job, f"ValueError: order {order} rejected")
    fail_with(make_job, "KeyError: 'sku'")
    fail_with(make_job, "KeyError: 'sku'", task="noop")
    fail_with(make_job, "KeyError: 'sku'", retry=True)  # retrying, not failed
    found = [(g.error_class, g.task, g.failed, g.retrying) for g in failures.groups()]
    assert found == [
        ("ValueError", "echo", 3, 0),
        ("KeyError", "echo", 1, 1),
        ("KeyError", "noop", 1, 0),
    ]
    group = failures.groups()[0]
    assert group.first <= group.last
    assert group.sample.error == "ValueError: order 2 rejected"  # the latest
    assert group.last_line == "ValueError: order 2 rejected"


def test_failures_page_shows_each_group_with_its_traceback(admin_client, make_job):
    fail_with(make_job, "ConnectionError: payment gateway timed out")
    page = shown(admin_client.get(FAILURES))
    assert "ConnectionError" in page and "shop/tasks.py" in page
    assert "Retry all 1" in page and "Delete all 1" in page
    assert "UTC" in page  # first and last seen carry their zone


def test_failures_page_without_failures(admin_client):
    assert "No failed jobs." in shown(admin_client.get(FAILURES))


def test_a_group_is_retried_as_a_whole_through_the_filter(admin_client, make_job, settings):
    """The group's button lands on the confirmation page of its filter; confirmed, every
    failed job of that cause and task is requeued, and no other."""
    settings.JOBS_MAX_BULK = 2
    mine = [fail_with(make_job, "ValueError: bad") for _ in range(5)]
    other = fail_with(make_job, "KeyError: 'sku'")
    group = next(g for g in failures.groups() if g.error_class == "ValueError")
    query = f"status__exact=failed&{group.query}"
    _, response = act(admin_client, "retry_jobs", mine[:1], query=query, select_across=1, index=0)
    assert "5 jobs match this filter" in shown(response)
    messages, _ = act(
        admin_client, "retry_jobs", mine[:1], query=query, select_across=1, confirmed="yes"
    )
    assert messages == ["5 jobs requeued in 3 batches."]
    assert Job.objects.filter(status=Status.QUEUED, error_class="ValueError").count() == 5
    assert Job.objects.get(pk=other.pk).status == Status.FAILED


def test_a_failure_without_a_cause_is_its_own_group(admin_client, make_job):
    """A failed job with no error groups under "(none)", and its filter selects only it."""
    job = make_job(max_attempts=1)
    (claimed,) = lifecycle.claim(worker_id="w1")
    lifecycle.fail(job=claimed, worker_id="w1", error="ValueError: x")
    Job.objects.filter(pk=job.pk).update(error=None, error_class=None)
    fail_with(make_job, "ValueError: y")
    (group,) = [g for g in failures.groups() if g.error_class is None]
    response = admin_client.get(f"{CHANGELIST}?status__exact=failed&{group.query}")
    assert str(job.pk)[:8] in shown(response)
    assert response.context["cl"].result_count == 1


def test_large_groups_are_counted_up_to_the_cap_then_estimated(admin_client, make_job, monkeypatch):
    """Past ``EXACT_FAILED`` in a group, PostgreSQL's estimate stands (marked ≈): the
    page's cost follows the number of groups, not of failures. Groups, order, first and
    last failure, and cause-less failures are as an exact grouping finds them."""
    monkeypatch.setattr(failures, "EXACT_FAILED", 2)
    for order in range(3):
        fail_with(make_job, f"ValueError: order {order} rejected")
    fail_with(make_job, "KeyError: 'sku'", task="noop")
    bare = fail_with(make_job, "TypeError: x")
    Job.objects.filter(pk=bare.pk).update(error=None, error_class=None)
    big, *rest = failures.groups()
    assert (big.error_class, big.task) == ("ValueError", "echo")
    small = next(g for g in rest if g.error_class == "KeyError")
    none = next(g for g in rest if g.error_class is None)
    assert len(rest) == 2 and (small.task, none.task) == ("noop", "echo")
    assert (small.failed, small.estimated, none.failed, none.estimated) == (1, False, 1, False)
    assert big.first < big.last and big.sample.error == "ValueError: order 2 rejected"
    if connection.vendor == "postgresql":
        assert big.estimated and big.failed >= 2  # an EXPLAIN's estimate (not analyzed)
        assert "≈" in shown(admin_client.get(FAILURES))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")  # the combined statistics, read in one query
        assert failures._common_causes("default")[("ValueError", "echo")] == 3
        assert failures.groups()[0].failed == 3
    else:
        assert (big.failed, big.estimated) == (3, False)


def test_list_shows_the_error_and_when_a_delayed_job_runs(admin_client, make_job):
    fail_with(make_job, "ValueError: " + "a very long reason " * 10)
    later = make_job(run_after=timezone.now() + timedelta(minutes=30))
    page = shown(admin_client.get(CHANGELIST))
    assert 'class="job-error"' in page and "ValueError: a very long reason" in page
    assert "…" in page  # shortened; the whole first line is its title
    assert "in 30.0 min" in page or "in 29.9 min" in page
    delayed = admin_client.get(f"{CHANGELIST}?scheduled=delayed").context["cl"]
    assert [job.pk for job in delayed.result_list] == [later.pk]
    due = admin_client.get(f"{CHANGELIST}?scheduled=due").context["cl"]
    assert list(due.result_list) == []
