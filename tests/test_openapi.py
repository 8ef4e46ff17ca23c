"""The OpenAPI document says what the server does (issue 12, point 6).

Each test validates real requests and answers against ``/api/schema`` with
``jsonschema`` and sends the same requests to the server: what the schema
accepts, the server accepts, and the reverse.
"""

from typing import Any

import jsonschema
import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def doc(api: Any, settings: Any) -> dict[str, Any]:
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
