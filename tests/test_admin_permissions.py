"""Who may do what in the admin: view-only staff look, change permission acts, superusers do all."""

import pytest
from django.urls import reverse

from jobs.models import Job, Status
from tests.admin_helpers import CHANGELIST, act, change_url, shown, staff  # noqa: F401
from tests.helpers import put_in

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:jobs_dashboard")
WORKERS = reverse("admin:jobs_worker_changelist")


def test_view_only_staff_sees_everything_but_cannot_act(client, staff, make_job):  # noqa: F811
    job = make_job()
    client.force_login(staff("view_job", "view_worker", "view_jobattempt"))
    page = shown(client.get(CHANGELIST))
    assert str(job.pk)[:8] in page
    assert 'name="action"' not in page  # no action menu at all
    assert client.get(DASHBOARD).status_code == 200
    assert client.get(WORKERS).status_code == 200
    detail = shown(client.get(change_url(job)))
    assert 'name="_save"' not in detail and 'name="CHANGE_FORM-action"' not in detail
    # Posting anyway changes nothing.
    messages, _ = act(client, "cancel_jobs", [job])
    assert "cancelled" not in " ".join(messages)
    assert client.post(change_url(job), {"status": Status.CANCELLED}).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert client.get(reverse("admin:jobs_job_add")).status_code == 403


def test_change_permission_allows_lifecycle_actions_but_not_delete(client, staff, make_job):  # noqa: F811
    job = make_job()
    client.force_login(staff("view_job", "change_job"))
    page = shown(client.get(CHANGELIST))
    assert 'value="cancel_jobs"' in page and 'value="delete_selected"' not in page
    messages, _ = act(client, "cancel_jobs", [job])
    assert messages == ["1 job cancelled."]
    act(client, "delete_selected", [job], post="yes")
    assert Job.objects.filter(pk=job.pk).exists()


def test_delete_permission_alone_allows_delete_only(client, staff, make_job):  # noqa: F811
    job = make_job()
    client.force_login(staff("view_job", "delete_job"))
    page = shown(client.get(CHANGELIST))
    assert 'value="delete_selected"' in page and 'value="cancel_jobs"' not in page
    act(client, "cancel_jobs", [job])
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    messages, _ = act(client, "delete_selected", [job], post="yes")
    assert messages == ["1 job deleted."]


def test_staff_without_job_permissions_is_refused(client, staff):  # noqa: F811
    client.force_login(staff())
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(DASHBOARD).status_code == 403
    assert client.get(WORKERS).status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_superuser_can_do_everything(admin_client, make_job):
    failed = put_in(Status.FAILED, make_job)
    queued = make_job()
    page = shown(admin_client.get(CHANGELIST))
    for action in ("retry_jobs", "cancel_jobs", "run_next", "delete_selected"):
        assert f'value="{action}"' in page
    assert act(admin_client, "retry_jobs", [failed])[0] == ["1 job requeued."]
    assert act(admin_client, "run_next", [queued])[0] == ["1 job moved to the front."]
    assert act(admin_client, "cancel_jobs", [queued])[0] == ["1 job cancelled."]
    assert act(admin_client, "delete_selected", [queued], post="yes")[0] == ["1 job deleted."]
    assert admin_client.get(DASHBOARD).status_code == 200
