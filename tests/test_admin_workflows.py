"""Workflows in the admin: a job's parents and dependents as links, what a waiting job
waits for, a workflow's page with its jobs by status, and cancelling a workflow."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from jobs import lifecycle
from jobs.models import Status
from tests.admin_helpers import shown

pytestmark = pytest.mark.django_db

WORKFLOWS = reverse("admin:jobs_workflow_changelist")


def gallery():
    workflow = lifecycle.enqueue_workflow(
        name="gallery",
        jobs=[
            {"name": "resize-1", "task": "echo"},
            {"name": "resize-2", "task": "echo"},
            {"name": "build", "task": "echo", "after": ["resize-1", "resize-2"]},
        ],
    )
    return workflow, {job.step: job for job in workflow.jobs.all()}


def job_page(client, job) -> str:
    return shown(client.get(reverse("admin:jobs_job_change", args=[job.pk])))


def test_a_waiting_job_links_its_parents_and_says_what_it_waits_for(admin_client):
    workflow, jobs = gallery()
    page = job_page(admin_client, jobs["build"])
    assert "its parents: resize-1 (queued), resize-2 (queued)" in page
    for name in ("resize-1", "resize-2"):
        assert reverse("admin:jobs_job_change", args=[jobs[name].pk]) in page
    assert reverse("admin:jobs_workflow_change", args=[workflow.pk]) in page


def test_a_parent_links_its_dependents(admin_client):
    _, jobs = gallery()
    page = job_page(admin_client, jobs["resize-1"])
    assert reverse("admin:jobs_job_change", args=[jobs["build"].pk]) in page
    assert "on failure: cancel" in page
    assert 'class="job-badge status-waiting"' in page


def test_a_job_outside_any_workflow_has_no_workflow_section(admin_client, make_job):
    assert "waits for" not in job_page(admin_client, make_job())


def test_the_workflow_page_lists_its_jobs_by_status(admin_client):
    workflow, jobs = gallery()
    lifecycle.cancel(job_id=jobs["resize-2"].pk)  # and so the build, by its policy
    page = shown(admin_client.get(reverse("admin:jobs_workflow_change", args=[workflow.pk])))
    queued, cancelled = page.index(">resize-1<"), page.index(">resize-2<")
    assert queued < cancelled < page.index(">build<")
    assert "cancelled: parent resize-2" in page
    listing = shown(admin_client.get(WORKFLOWS))
    assert "gallery" in listing and "cancelled" in listing


def test_cancelling_a_workflow_cancels_what_has_not_run(admin_client):
    workflow, jobs = gallery()
    lifecycle.claim_for_hand(job_id=jobs["resize-1"].pk)
    response = admin_client.post(
        WORKFLOWS,
        {"action": "cancel_workflows", "_selected_action": [str(workflow.pk)]},
        follow=True,
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "2 jobs cancelled; running jobs finish."
    ]
    statuses = dict(workflow.jobs.values_list("step", "status"))
    assert statuses == {
        "resize-1": Status.PROCESSING,
        "resize-2": Status.CANCELLED,
        "build": Status.CANCELLED,
    }


def test_the_workflow_pages_take_the_job_permissions(client, make_user):
    workflow, _ = gallery()
    viewer = make_user("view", staff=True)
    client.force_login(viewer)
    assert client.get(WORKFLOWS).status_code == 200
    assert client.get(reverse("admin:jobs_workflow_change", args=[workflow.pk])).status_code == 200
    nobody = make_user(staff=True, name="nobody")
    client.force_login(nobody)
    assert client.get(WORKFLOWS).status_code == 403
