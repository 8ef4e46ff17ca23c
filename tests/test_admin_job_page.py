"""The job page in an incident: times with seconds and zone, each attempt's duration,
the whole traceback, progress only while it means something, and a status drop-down
offering only the transitions the lifecycle allows."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job, Status
from tests.admin_helpers import change_url, shown
from tests.test_lifecycle import ALL, put_in

pytestmark = pytest.mark.django_db

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def failed_twice(make_job) -> Job:
    job = make_job(max_attempts=2)
    for attempt in (1, 2):
        Job.objects.filter(pk=job.pk).update(run_after=None)
        (held,) = lifecycle.claim(worker_id="w1")
        held.started_at = timezone.now() - timedelta(seconds=1.5)
        lifecycle.mark_started(worker_id="w1", starts=[(held, held.started_at)])
        lifecycle.report_progress(job=held, worker_id="w1", percent=100)
        trace = f"Traceback (most recent call last):\n  line {attempt}\nKeyError: 'sku'"
        lifecycle.fail(job=held, worker_id="w1", error="KeyError: 'sku'", traceback=trace)
    return Job.objects.get(pk=job.pk)


def test_times_have_seconds_and_zone_and_attempts_their_duration(admin_client, make_job):
    job = failed_twice(make_job)
    page = shown(admin_client.get(change_url(job)))
    for field in ("created", "started", "finished", "updated"):
        assert re.search(rf'field-{field}">.*?{STAMP}', page, re.S), field
    assert len(re.findall(r'field-started">\s*<p>' + STAMP, page)) == 2
    assert len(re.findall(r'field-seconds">\s*<p>1\.\d{3} s', page)) == 2


def test_the_traceback_is_shown_whole_and_a_failed_job_has_no_progress(admin_client, make_job):
    job = failed_twice(make_job)
    page = shown(admin_client.get(change_url(job)))
    assert '<pre class="job-pre job-pre-full">Traceback' in page
    assert "<progress" not in page  # it reported 100% before failing: meaningless now


def test_progress_is_shown_while_running(admin_client, make_job):
    make_job()
    (held,) = lifecycle.claim(worker_id="w1")
    lifecycle.report_progress(job=held, worker_id="w1", percent=40, message="rows")
    page = shown(admin_client.get(change_url(held)))
    assert '<progress max="100" value="40">' in page


@pytest.mark.parametrize("current", ALL)
def test_status_drop_down_offers_only_allowed_transitions(admin_client, make_job, current):
    job = put_in(current, make_job)
    form = admin_client.get(change_url(job)).context["adminform"].form
    offered = {value for value, _ in form.fields["status"].widget.choices}
    allowed = {to for (frm, to) in lifecycle.MANUAL_TRANSITIONS if frm == current}
    assert offered == {current, *allowed}
    if current in (Status.DONE, Status.FAILED, Status.CANCELLED):
        assert offered == {current, Status.QUEUED}  # only a retry
