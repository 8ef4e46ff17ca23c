"""Shared helpers for the admin tests: staff users with chosen permissions, actions."""

from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from jobs.models import Job

CHANGELIST = reverse("admin:jobs_job_changelist")


def change_url(job: Job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def shown(response: Any) -> str:
    return response.content.decode()


class _FormFields(HTMLParser):
    """What a browser submits from ``<form id=form_id>``: its inputs, selects and textareas."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif tag == "option" and self.select and "selected" in a:
            self.fields[self.select] = a.get("value") or ""
        if not self.inside or not a.get("name"):
            return
        name = a["name"] or ""
        kind = a.get("type")
        if tag == "input" and kind not in ("submit", "checkbox", "radio"):
            self.fields[name] = a.get("value") or ""
        elif tag == "input" and kind != "submit" and "checked" in a:
            self.fields[name] = a.get("value") or "on"
        elif tag == "select":
            self.select = name
            self.fields.setdefault(name, "")
        elif tag == "textarea":
            self.textarea = name
            self.fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields[self.textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea" and self.textarea:
            # A browser drops the newline that follows <textarea>.
            self.fields[self.textarea] = self.fields[self.textarea].removeprefix("\n")
            self.textarea = None


def page_form(response: Any, form_id: str = "job_form") -> dict[str, str]:
    """The fields a browser would post from the rendered page, with the values it shows."""
    parser = _FormFields(form_id)
    parser.feed(shown(response))
    return parser.fields


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
