"""Shared helpers for the admin tests: staff users with chosen permissions, actions."""

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from jobs.models import Job
from tests.test_lifecycle import ALL, put_in

CHANGELIST = reverse("admin:jobs_job_changelist")


def change_url(job: Job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def one_of_each(make_job: Callable[..., Job]) -> dict[str, Job]:
    """One job per status (the queued one last, so no claim takes it)."""
    return {status: put_in(status, make_job) for status in reversed(ALL)}


def shown(response: Any) -> str:
    return response.content.decode()


def act(
    client: Any, action: str, jobs: Iterable[Job], query: str = "", **extra: Any
) -> tuple[list[str], Any]:
    """Post a changelist action on ``jobs``; return the messages shown and the response.

    ``query`` is the changelist's query string (its filters), as the page would send it.
    """
    data = {"action": action, "_selected_action": [str(j.pk) for j in jobs], **extra}
    response = client.post(f"{CHANGELIST}?{query}", data, follow=True)
    assert response.status_code == 200
    # Following the redirect renders (and so consumes) the messages.
    return [str(m) for m in get_messages(response.wsgi_request)], response


@pytest.fixture
def staff(db: None) -> Callable[..., Any]:
    """Make a staff user holding the named ``jobs`` permissions (codenames)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def make(*codenames: str) -> Any:
        user = get_user_model().objects.create_user(
            f"staff-{'-'.join(codenames) or 'none'}", password="pw-for-tests-only", is_staff=True
        )
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
        )
        return user

    return make
