"""The OpenAPI document says what the server does (issue 12, point 6).

Each test validates real requests and answers against ``/api/schema`` with
``jsonschema`` and sends the same requests to the server: what the schema
accepts, the server accepts, and the reverse. ``tests/test_fuzz.py`` does the
same at scale.
"""

from typing import Any

import jsonschema
import pytest

from jobs import schedules
from jobs.models import Schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def doc(api: Any, settings: Any) -> dict[str, Any]:
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["hooks.example"]
    response = api.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def valid(doc: dict[str, Any], component: str, value: Any) -> bool:
    """Whether ``value`` is valid under ``#/components/schemas/<component>``."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def request_body(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
    return {**content["schema"], "components": doc["components"]}


def test_a_default_schedule_matches_its_own_schema(api, doc):
    """Schedule.queue was a oneOf that "" (the default) matched twice: always invalid."""
    body = {"name": "n", "cron": "0 3 * * *", "task": "echo"}
    created = api.post("/api/schedules", body, format="json")
    assert created.status_code == 201 and created.json()["queue"] == ""
    assert valid(doc, "Schedule", created.json())
    listed = api.get("/api/schedules").json()
    assert all(valid(doc, "Schedule", item) for item in listed)


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"ids": ["3f2c1c1e-0000-4000-8000-000000000000"]}, True),
        ({"status": "failed", "queue": "mail"}, True),
        ({"ids": ["3f2c1c1e-0000-4000-8000-000000000000"], "status": "failed"}, False),
        ({"ids": ["3f2c1c1e-0000-4000-8000-000000000000"], "queue": "mail"}, False),
    ],
)
def test_retry_ids_and_filters_exclude_each_other_in_the_schema_as_in_the_server(
    api, doc, body, accepted
):
    schema = request_body(doc, "/api/jobs/retry/", "post")
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is accepted
    response = api.post("/api/jobs/retry", body, format="json")
    assert (response.status_code == 200) is accepted, response.content


def test_a_retry_without_a_body_is_refused_as_the_schema_says(api, doc):
    """No body selects no jobs (a 400): the schema must not call the body optional, or a
    client following it sends none (schemathesis did: ST202)."""
    assert doc["paths"]["/api/jobs/retry/"]["post"]["requestBody"]["required"] is True
    assert api.post("/api/jobs/retry").status_code == 400


@pytest.mark.parametrize(
    ("job", "accepted"),
    [
        (
            {"task": "send_email", "payload": {"to": "a@b.example", "subject": "s", "body": ""}},
            True,
        ),
        ({"task": "send_email", "payload": {"subject": "s", "body": ""}}, False),
        ({"task": "send_email"}, False),
        ({"task": "send_email", "payload": {"to": "a@b.example", "subject": 5, "body": ""}}, False),
        ({"task": "http_request", "payload": {"url": "https://hooks.example/x"}}, True),
        ({"task": "http_request", "payload": {"url": "https://elsewhere.example/x"}}, False),
        ({"task": "http_request", "payload": {"url": "https://hooks.example", "body": ""}}, True),
        ({"task": "http_request", "payload": {"url": "https://hooks.example", "json": None}}, True),
        (
            {
                "task": "http_request",
                "payload": {"url": "https://hooks.example", "expected_status": 201.0},
            },
            True,
        ),
        (
            {
                "task": "http_request",
                "payload": {"url": "https://hooks.example", "body": "", "json": 1},
            },
            False,
        ),
        ({"task": "echo", "payload": {"anything": [1, "two"]}}, True),
        ({"task": "echo", "payload": "a\x00b"}, False),
        ({"task": "echo", "idempotency_key": "a\x00b"}, False),
        ({"payload": "the default task takes anything"}, True),
    ],
)
def test_a_jobs_payload_is_documented_with_its_tasks_rules(api, doc, job, accepted):
    schema = request_body(doc, "/api/jobs/", "post")
    assert jsonschema.Draft202012Validator(schema).is_valid(job) is accepted
    response = api.post("/api/jobs", job, format="json")
    assert (response.status_code == 201) is accepted, response.content
    schedule = {"name": "n", "cron": "0 3 * * *", **job}
    schedule.setdefault("task", "simulate")
    assert valid(doc, "ScheduleRequest", schedule) is accepted
    response = api.post("/api/schedules", schedule, format="json")
    assert (response.status_code == 201) is accepted, response.content


def test_the_bulk_form_is_documented(api, doc):
    schema = request_body(doc, "/api/jobs/", "post")
    many = [{"task": "echo", "payload": 1}, {"task": "noop"}]
    assert jsonschema.Draft202012Validator(schema).is_valid(many)
    response = api.post("/api/jobs", many, format="json")
    assert response.status_code == 201
    created = doc["paths"]["/api/jobs/"]["post"]["responses"]["201"]["content"]
    answer = {**created["application/json"]["schema"], "components": doc["components"]}
    assert jsonschema.Draft202012Validator(answer).is_valid(response.json())
    with_key = [{"task": "echo", "idempotency_key": "k"}]
    assert not jsonschema.Draft202012Validator(schema).is_valid(with_key)
    assert api.post("/api/jobs", with_key, format="json").status_code == 400


def test_a_schedule_change_sends_task_and_payload_together(api, doc):
    schedule = schedules.save(Schedule(name="n", cron="0 3 * * *", task="echo", payload=1))
    for body, accepted in [
        ({"payload": {"to": "a@b.example"}}, False),
        ({"task": "send_email"}, False),
        ({"task": "echo", "payload": 2}, True),
        ({"enabled": False}, True),
    ]:
        assert valid(doc, "PatchedScheduleRequest", body) is accepted, body
        response = api.patch(f"/api/schedules/{schedule.pk}", body, format="json")
        assert (response.status_code == 200) is accepted, response.content
    schedule.refresh_from_db()
    assert (schedule.task, schedule.payload) == ("echo", 2)


def test_a_schedule_name_taken_is_a_documented_409(api, doc):
    body = {"name": "n", "cron": "0 3 * * *", "task": "echo"}
    assert api.post("/api/schedules", body, format="json").status_code == 201
    response = api.post("/api/schedules", body, format="json")
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert "409" in doc["paths"]["/api/schedules/"]["post"]["responses"]
    other = api.post("/api/schedules", {**body, "name": "m"}, format="json").json()
    response = api.patch(f"/api/schedules/{other['id']}", {"name": "n"}, format="json")
    assert response.status_code == 409
    assert Schedule.objects.get(pk=other["id"]).name == "m"


@pytest.mark.parametrize(("zone", "accepted"), [("Europe/Paris", True), ("Mars/Olympus", False)])
def test_time_zones_are_the_iana_names(api, doc, zone, accepted):
    assert doc["components"]["schemas"]["ScheduleRequest"]["properties"]["timezone"]["format"] == (
        "iana-time-zone"
    )
    body = {"name": "n", "cron": "0 3 * * *", "task": "echo", "timezone": zone}
    response = api.post("/api/schedules", body, format="json")
    assert (response.status_code == 201) is accepted, response.content


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("?format=xml", {}, 404),
        ("", {"HTTP_ACCEPT": "text/html"}, 406),
    ],
)
def test_the_schema_views_own_errors_are_json(api, query, headers, status):
    response = api.get(f"/api/schema{query}", **headers)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"detail", "code"}
