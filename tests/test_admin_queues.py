"""The queues page (``jobs.admin.queue_page``): its numbers, its pause control, who may use it."""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import lifecycle
from jobs.admin import queue_page
from jobs.models import Job, Queue, Status
from tests.admin_helpers import shown, staff  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

QUEUES = reverse("admin:jobs_queues")


def finished(queue: str, status: str, *, minutes_ago: float, n: int = 1) -> None:
    """Jobs of ``queue`` finished ``minutes_ago`` (rows written directly: only their
    finish time and status matter here)."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Job.objects.bulk_create(
        [Job(task="echo", queue=queue, status=status, finished_at=at) for _ in range(n)]
    )


@pytest.fixture
def busy(make_job):
    """mail: 2 due (the oldest waiting 5 minutes), 1 delayed, 1 processing; 3 done and 1
    failed in the last hour, 5 done two hours ago. archive: only old jobs. idle: a paused
    Queue row with a concurrency limit and no jobs."""
    old = make_job(queue="mail")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    make_job(queue="mail", run_after=timezone.now() + timedelta(hours=1))
    make_job(queue="mail", priority=50)
    lifecycle.claim(worker_id="w1", queues=["mail"], limit=1)  # the priority-50 one
    make_job(queue="mail")
    finished("mail", Status.DONE, minutes_ago=10, n=3)
    finished("mail", Status.FAILED, minutes_ago=20)
    finished("mail", Status.DONE, minutes_ago=120, n=5)
    finished("archive", Status.DONE, minutes_ago=600, n=2)
    lifecycle.pause_queue(name="idle")
    Queue.objects.filter(name="idle").update(concurrency=3, rate="10/s")


def test_each_queue_s_numbers(busy):
    rows = {row.name: row for row in queue_page.rows()}
    assert set(rows) == {"mail", "archive", "idle"}
    mail = rows["mail"]
    assert (mail.due, mail.delayed, mail.processing) == (2, 1, 1)
    assert (mail.done, mail.failed) == (3, 1)
    assert mail.per_minute == pytest.approx(4 / 60)
    assert mail.failure_rate == pytest.approx(0.25)
    assert 290 <= mail.wait_seconds <= 330 and mail.wait.endswith("min")
    assert not mail.limits.paused and mail.limit_text == []
    archive = rows["archive"]  # listed though it has only old finished jobs
    assert (archive.due, archive.done, archive.failure_rate, archive.wait) == (0, 0, None, None)
    idle = rows["idle"]
    assert idle.limits.paused and idle.limit_text == ["concurrency 3", "rate 10/s"]


def test_the_page_shows_them_and_links_each_queue_s_jobs(admin_client, busy):
    page = shown(admin_client.get(QUEUES))
    mail = re.search(r'<tr id="queue-mail".*?</tr>', page, re.S).group(0)
    for cls, value in [("due", "2"), ("delayed", "1"), ("processing", "1"), ("done", "3")]:
        assert re.search(rf'class="count {cls}">(<a [^>]*>)?{value}<', mail), cls
    assert ">25%<" in mail and ">0.1<" in mail and "queue-active" in mail
    assert "?queue=mail&amp;scheduled=delayed" in mail
    idle = re.search(r'<tr id="queue-idle".*?</tr>', page, re.S).group(0)
    assert "queue-paused" in idle and "concurrency 3" in idle and 'value="resume"' in idle
    assert 'data-live="5"' in page and "jobs/live.js" in page


def test_linked_from_the_admin_index_the_dashboard_and_the_job_list(admin_client):
    for url in ["admin:index", "admin:jobs_dashboard", "admin:jobs_job_changelist"]:
        assert QUEUES in shown(admin_client.get(reverse(url)))


def test_pause_and_resume_go_through_the_lifecycle_and_are_logged(admin_client, busy):
    response = admin_client.post(QUEUES, {"queue": "mail", "action": "pause"})
    assert response.status_code == 302 and response.url == QUEUES
    assert Queue.objects.get(name="mail").paused
    assert lifecycle.claim(worker_id="w2", queues=["mail"]) == []  # its jobs wait
    entry = LogEntry.objects.get(object_repr="mail")
    assert "paused" in entry.get_change_message()
    assert "Queue mail paused." in shown(admin_client.get(QUEUES))
    admin_client.post(QUEUES, {"queue": "mail", "action": "resume"})
    assert not Queue.objects.get(name="mail").paused
    assert len(lifecycle.claim(worker_id="w2", queues=["mail"], limit=5)) == 2


def test_a_bad_queue_name_or_action_changes_nothing(admin_client, busy):
    for form in [{"queue": "mail", "action": "drop"}, {"queue": "no spaces", "action": "pause"}]:
        response = admin_client.post(QUEUES, form, follow=True)
        assert "Nothing was changed" in shown(response)
    assert list(Queue.objects.values_list("name", flat=True)) == ["idle"]


def test_without_change_queue_no_control_and_a_post_is_refused(client, staff, busy):  # noqa: F811
    viewer = staff("view_job", "view_queue")
    client.force_login(viewer)
    page = shown(client.get(QUEUES))
    assert 'id="queue-mail"' in page and 'name="action"' not in page
    assert client.post(QUEUES, {"queue": "mail", "action": "pause"}).status_code == 403
    assert not Queue.objects.filter(name="mail").exists()


def test_change_queue_gives_the_control(client, staff, busy):  # noqa: F811
    client.force_login(staff("view_job", "change_queue"))
    assert 'name="action"' in shown(client.get(QUEUES))
    client.post(QUEUES, {"queue": "mail", "action": "pause"})
    assert Queue.objects.get(name="mail").paused


def test_without_view_job_the_page_is_refused(client, staff):  # noqa: F811
    client.force_login(staff("view_queue", "change_queue"))
    assert client.get(QUEUES).status_code == 403
    assert client.post(QUEUES, {"queue": "mail", "action": "pause"}).status_code == 403


def test_queries_do_not_grow_with_jobs(admin_client, make_job):
    """As many queries with 40 jobs as with 3, in the same queues."""

    def render() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(QUEUES).status_code == 200
        return len(queries)

    for queue in ("a", "b", "c"):
        make_job(queue=queue)
    small = render()
    for i in range(37):
        make_job(queue=("a", "b", "c")[i % 3])
    finished("a", Status.DONE, minutes_ago=3, n=10)
    assert render() == small
