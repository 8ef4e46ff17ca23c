"""The API's policy comes from the views (``jobs/api/defaults.py``, ``JOBS_API_*``), not from the
project's ``REST_FRAMEWORK``: the same authentication, permissions, parsers, throttles, filters,
pages and errors wherever ``jobs.api.urls`` is mounted."""

import base64
import json
import os

import pytest
from rest_framework.authtoken.models import Token

from jobs import lifecycle
from tests.conftest import database_url, run_python

# Run in a process whose settings have no REST_FRAMEWORK at all: DRF binds its defaults to the
# view classes at import, so only a fresh process shows what a host project would serve.
PROBE = """
import json
import django
django.setup()
from django.test import Client
from jobs import lifecycle

token = {token!r}
anon, user = Client(), Client(headers={{"authorization": f"Token {{token}}"}})
job, _ = lifecycle.enqueue(task="echo", payload=1)
lifecycle.enqueue(task="noop", payload=2)

def answer(response):
    body = response.json() if response["Content-Type"] == "application/json" else None
    return [response.status_code, body, response.get("Link"), response.get("WWW-Authenticate")]

seen = {{
    "anon list": answer(anon.get("/api/jobs")),
    "anon create": answer(anon.post("/api/jobs", {{}}, content_type="application/json")),
    "anon delete": answer(anon.delete(f"/api/jobs/{{job.pk}}")),
    "form create": answer(user.post("/api/jobs", {{"task": "noop"}})),
    "bad filter": answer(user.get("/api/jobs?status=bogus")),
    "filter": answer(user.get("/api/jobs?task=noop")),
    "page": answer(user.get("/api/jobs?page_size=1")),
    "not found": answer(user.get("/api/jobs/not-a-job")),
    "writes": [
        user.post("/api/jobs", {{"task": "noop"}}, content_type="application/json").status_code
        for _ in range(3)
    ],
}}
print(json.dumps(seen))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_project_without_rest_framework_settings_gets_the_same_api(user):
    token = Token.objects.create(user=user).key
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.drf_defaults_settings",
        "DATABASE_URL": database_url(),
        "JOBS_WRITE_RATE": "3/minute",  # the form post counts too: the third write is refused
    }
    done = run_python(PROBE.format(token=token), env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    for call in ("anon list", "anon create", "anon delete"):
        status, body, _, challenge = seen[call]
        assert status == 401, (call, seen[call])
        assert (body["code"], challenge) == ("not_authenticated", "Token"), call
    assert seen["form create"][0] == 415  # JSON only
    status, body, _, _ = seen["bad filter"]
    assert (status, body["code"], list(body["errors"])) == (400, "invalid", ["status"])
    assert [job["task"] for job in seen["filter"][1]] == ["noop"]
    status, body, link, _ = seen["page"]
    assert status == 200 and len(body) == 1 and 'rel="next"' in link
    assert seen["not found"][:2] == [404, {"detail": "Not found.", "code": "not_found"}]
    assert seen["writes"] == [201, 201, 429]


def test_page_size_comes_from_jobs_api_page_size(api, make_job, settings):
    settings.JOBS_API_PAGE_SIZE = 2
    for _ in range(3):
        make_job()
    response = api.get("/api/jobs")
    assert len(response.json()) == 2 and 'rel="next"' in response["Link"]


def test_pagination_can_be_turned_off(api, settings):
    settings.JOBS_API_PAGINATION_CLASS = None
    lifecycle.enqueue_many([{"task": "noop"}] * 101)  # more than a default page
    response = api.get("/api/jobs")
    assert len(response.json()) == 101 and "Link" not in response


def test_permission_classes_come_from_the_setting(anon, make_job, settings):
    make_job()
    assert anon.get("/api/jobs").status_code == 401
    settings.JOBS_API_PERMISSION_CLASSES = ["rest_framework.permissions.AllowAny"]
    assert len(anon.get("/api/jobs").json()) == 1


def test_parser_classes_from_the_environment(api, monkeypatch):
    """A list setting may come from the environment, comma-separated."""
    assert api.post("/api/jobs", {"task": "noop"}).status_code == 415
    monkeypatch.setenv(
        "JOBS_API_PARSER_CLASSES",
        "jobs.api.parsers.JSONParser, rest_framework.parsers.MultiPartParser",
    )
    assert api.post("/api/jobs", {"task": "noop"}).status_code == 201


BASIC_AUTH = [
    # JOBS_API_BASIC_AUTH, HTTPS, password, status, error code
    (True, True, "pw-for-tests-only", 200, None),
    (True, True, "wrong", 401, "authentication_failed"),
    (True, False, "pw-for-tests-only", 401, "authentication_failed"),
    (False, True, "pw-for-tests-only", 401, "not_authenticated"),
    (None, True, "pw-for-tests-only", 401, "not_authenticated"),  # not set: off
]


@pytest.mark.parametrize(("enabled", "secure", "password", "status", "code"), BASIC_AUTH)
def test_basic_authentication_only_when_enabled_and_only_over_https(
    client, make_user, make_job, settings, enabled, secure, password, status, code
):
    """README: with JOBS_API_BASIC_AUTH (off by default) the API also accepts HTTP Basic,
    only on HTTPS requests; Basic over plain HTTP is a 401 even with the right password."""
    if enabled is None:
        assert not hasattr(settings, "JOBS_API_BASIC_AUTH")
        assert "JOBS_API_BASIC_AUTH" not in os.environ
    else:
        settings.JOBS_API_BASIC_AUTH = enabled
    make_user("view", name="basic")
    job = make_job()
    credentials = base64.b64encode(f"basic:{password}".encode()).decode()
    headers = {"authorization": f"Basic {credentials}"}
    response = client.get("/api/jobs", headers=headers, secure=secure)
    assert response.status_code == status, response.content
    if code is None:
        assert [j["id"] for j in response.json()] == [str(job.pk)]
        return
    assert response.json()["code"] == code
    if not secure:
        assert response.json()["detail"] == (
            "HTTP Basic authentication is only accepted over HTTPS."
        )


def test_every_api_view_takes_the_api_defaults():
    """A view without them would run with the host's DRF defaults (AllowAny in a bare project)."""
    from django.urls import URLResolver, get_resolver

    from jobs.api.defaults import ApiDefaults

    def views(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from views(pattern.url_patterns)
            else:
                yield pattern.callback

    found = [
        getattr(view, "cls", view) for view in views(get_resolver("jobs.api.urls").url_patterns)
    ]
    assert len(found) > 10
    assert [view for view in found if not issubclass(view, ApiDefaults)] == []
