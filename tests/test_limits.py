"""Oversized, malformed, wrongly typed and boundary inputs each get a clear 4xx."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from jobs.models import Job

pytestmark = pytest.mark.django_db


def _is_error(response, status, code=None):
    """Assert the common error shape: detail and code, JSON, never HTML."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str)
    if code:
        assert body["code"] == code, body
    return body


@pytest.mark.parametrize(
    ("field", "ok", "bad"),
    [
        ("priority", [-100, 0, 100], [-101, 101, "high", 1.5, None, 10**30]),
        ("max_attempts", [1, 100], [0, 101, -1, "3x", True]),
        ("timeout", [0.1, 86400, None], [0.05, 86401, -1, "slow"]),
        ("queue", ["a", "x" * 100, "mail.eu-1:hi"], ["", "x" * 101, "bad queue", "q\u0000"]),
        ("run_after", ["2030-01-01T00:00:00Z", None], ["tomorrow", 5, "2030-13-01T00:00Z"]),
        ("task", ["echo"], ["no-such-task", "", 7, ["echo"]]),
        ("idempotency_key", ["k" * 200], ["k" * 201, "a\u0000b", {"a": 1}]),
    ],
)
def test_field_boundaries(api, field, ok, bad):
    for value in ok:
        response = api.post("/api/jobs", {"task": "echo", field: value}, format="json")
        assert response.status_code == 201, (value, response.content)
    created = Job.objects.count()
    for value in bad:
        body = {"task": "echo", field: value}
        response = api.post("/api/jobs", body, format="json")
        error = _is_error(response, 400, "invalid")
        assert list(error["errors"]) == [field], (value, error)
        assert error["detail"].startswith(f"Invalid input. {field}: ")
    assert Job.objects.count() == created


def test_payload_size_cap(api, settings):
    settings.JOBS_MAX_PAYLOAD_BYTES = 100
    fits = "x" * 98  # 100 bytes as JSON, with the quotes
    assert api.post("/api/jobs", {"payload": fits}, format="json").status_code == 201
    response = api.post("/api/jobs", {"payload": fits + "x"}, format="json")
    error = _is_error(response, 400, "invalid")
    assert error["errors"]["payload"] == ["The payload is 101 bytes as JSON; the limit is 100."]


def test_default_payload_cap_is_256_kib(api):
    big = "x" * (256 * 1024)
    error = _is_error(api.post("/api/jobs", {"payload": big}, format="json"), 400)
    assert "limit is 262144" in error["errors"]["payload"][0]


@pytest.mark.parametrize(
    "payload",
    [{"a": "nul \u0000 inside"}, {"nul\u0000key": 1}, json.loads("[" * 101 + "]" * 101)],
    ids=["nul-value", "nul-key", "too-deep"],
)
def test_payloads_a_database_cannot_store_are_refused(api, payload):
    response = api.post("/api/jobs", {"payload": payload}, format="json")
    assert "payload" in _is_error(response, 400, "invalid")["errors"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"payload": NaN}',
        b'{"payload": 1e400}',
        b'{"payload": "\\ud800"}',
        b'{"payload": ' + b"[" * 50000 + b"]" * 50000 + b"}",
        b"\xff\xfe",
        b"[1, 2]",
        b'"just a string"',
    ],
    ids=["syntax", "nan", "overflow", "surrogate", "deep", "not-utf8", "array", "string"],
)
def test_malformed_bodies_are_400(api, raw):
    response = api.post("/api/jobs", raw, content_type="application/json")
    _is_error(response, 400)
    assert not Job.objects.exists()


def test_request_body_cap_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"payload": "x" * 1000})
    response = api.post("/api/jobs", body, content_type="application/json")
    error = _is_error(response, 413, "too_large")
    assert "1000 bytes" in error["detail"]
    assert not Job.objects.exists()


def test_oversized_form_body_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/jobs", {"payload": "x" * 2000}, format="multipart")
    _is_error(response, 413)


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
def test_bodies_other_than_json_are_415(api, content_type):
    response = api.post("/api/jobs", b"payload=1", content_type=content_type)
    _is_error(response, 415, "unsupported_media_type")


def test_unacceptable_accept_is_406(api):
    _is_error(api.get("/api/jobs", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")


@pytest.mark.parametrize("size", ["0", "-1", "1001", "abc", "1.5", ""])
def test_page_size_outside_the_cap_is_400(api, size):
    error = _is_error(api.get(f"/api/jobs?page_size={size}"), 400, "invalid")
    assert "1 to 1000" in error["errors"]["page_size"][0]


def test_page_size_cap_comes_from_settings(api, settings, make_job):
    settings.JOBS_MAX_PAGE_SIZE = 2
    assert api.get("/api/jobs?page_size=2").status_code == 200
    _is_error(api.get("/api/jobs?page_size=3"), 400)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Malformed, and well-formed as DRF encodes cursors but not issued by this server.
FORGED_CURSORS = {
    "garbage": "garbage",
    "empty": "",
    "not-base64": "%25%25%25",
    "position-not-a-value": _b64("p=abc"),
    "position": _b64("p=2020-01-01"),
    "negative-offset": _b64("o=-1"),
    "offset": _b64("o=1"),
    "reverse": _b64("r=1"),
    "unknown-key": _b64("x=1"),
    "huge-offset": _b64("o=99999999999999999999"),
}


@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
@pytest.mark.parametrize("ordering", ["", "-priority", "status"])
def test_a_cursor_the_server_did_not_issue_is_400(api, make_job, cursor, ordering):
    make_job()
    make_job()
    response = api.get(f"/api/jobs?cursor={cursor}&ordering={ordering}")
    assert "cursor" in _is_error(response, 400, "invalid")["errors"]


def _next(response) -> str:
    return response.headers["Link"].split(";")[0].strip("<>")


def test_a_cursor_holds_only_for_the_ordering_it_was_issued_for(api, make_job):
    for priority in (1, 2, 3):
        make_job(priority=priority)
    first = api.get("/api/jobs?ordering=created_at&page_size=1")
    cursor = parse_qs(urlsplit(_next(first)).query)["cursor"][0]
    same = api.get("/api/jobs", {"ordering": "created_at", "page_size": 1, "cursor": cursor})
    assert same.status_code == 200 and same.json()[0]["priority"] == 2
    other = api.get("/api/jobs", {"ordering": "-priority", "page_size": 1, "cursor": cursor})
    assert "cursor" in _is_error(other, 400, "invalid")["errors"]


def test_write_throttle_per_user(api, settings, make_user, client_for):
    settings.JOBS_WRITE_RATE = "2/minute"
    assert api.post("/api/jobs", {}, format="json").status_code == 201
    assert api.post("/api/jobs", {}, format="json").status_code == 201
    response = api.post("/api/jobs", {}, format="json")
    _is_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert api.get("/api/jobs").status_code == 200  # reads are not throttled
    other = client_for(make_user("add"))
    assert other.post("/api/jobs", {}, format="json").status_code == 201  # per user


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_url_is_a_json_404(api, settings, debug):
    settings.DEBUG = debug
    _is_error(api.get("/api/nothing-here"), 404, "not_found")


def test_unsupported_method_is_a_json_405(api, make_job):
    job = make_job()
    response = api.put(f"/api/jobs/{job.pk}", {}, format="json")
    _is_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("debug", [False, True])
def test_server_errors_are_json_without_a_traceback(settings, debug):
    settings.DEBUG = debug
    settings.ROOT_URLCONF = "tests.urls"
    response = Client(raise_request_exception=False).get("/api/boom")
    body = _is_error(response, 500, "internal_server_error")
    assert b"secret internals" not in response.content
    assert b"Traceback" not in response.content
    assert body["detail"] == "Internal Server Error."


@pytest.mark.parametrize("path", ["/api/jobs", "/health", "/metrics", "/docs", "/api/schema"])
def test_disallowed_host_is_a_json_400(api, path):
    _is_error(api.get(path, HTTP_HOST="evil.example"), 400, "bad_request")


def test_the_admin_keeps_its_own_error_pages(client):
    response = client.get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400 and not response["Content-Type"].startswith(
        "application/json"
    )


def test_admin_bulk_actions_are_capped(admin_client, settings, make_job):
    settings.JOBS_MAX_BULK = 2
    jobs = [make_job() for _ in range(3)]
    data = {"action": "cancel_jobs", "_selected_action": [str(j.pk) for j in jobs], "index": 0}
    response = admin_client.post("/admin/jobs/job/", data, follow=True)
    assert b"at most 2" in response.content
    assert set(Job.objects.values_list("status", flat=True)) == {"queued"}


@pytest.mark.parametrize(
    "query",
    [
        "created_after=",
        "created_after=yesterday",
        "created_before=yesterday",
        "created_after=0001-01-01T00:00:00%2B14:00",
        "status=paused",
        "task=a%00b",
        "queue=%00",
    ],
)
def test_bad_filter_values_are_400(api, query):
    _is_error(api.get(f"/api/jobs?{query}"), 400, "invalid")


@pytest.mark.parametrize(
    "query",
    ["created_after=0096-03-04T12:36:58.4791-16:03", "created_before=9999-12-31T23:59:59Z"],
)
def test_extreme_but_valid_dates_filter(api, make_job, query):
    """Found by the fuzzer on PostgreSQL: offsets beyond 15:59 were a database error."""
    make_job()
    response = api.get(f"/api/jobs?{query}")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "5"}, "priority"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"timeout": "0.5"}, "timeout"),
        ({"queue": 5}, "queue"),
        ({"idempotency_key": 5}, "idempotency_key"),
        ({"status": "queued"}, "status"),
        ({"priorty": 1}, "priorty"),
        ({"run_after": "0001-01-01T00:00:00+14:00"}, "run_after"),
    ],
)
def test_wrong_types_read_only_and_unknown_fields_are_400(api, body, field):
    error = _is_error(api.post("/api/jobs", body, format="json"), 400, "invalid")
    assert list(error["errors"]) == [field]


def test_json_integers_may_be_written_as_whole_floats(api):
    response = api.post("/api/jobs", {"max_attempts": 4.0, "priority": -2.0}, format="json")
    assert response.status_code == 201
    assert (response.json()["max_attempts"], response.json()["priority"]) == (4, -2)


@pytest.mark.parametrize(
    ("detail", "errors"),
    [
        ({}, {"non_field_errors": ["Invalid input."]}),
        ([], {"non_field_errors": ["Invalid input."]}),
        ({"a": {"b": ["bad"]}}, {"a.b": ["bad"]}),
        ({"a": [{"b": ["bad"]}]}, {"a.0.b": ["bad"]}),
        (["one", "two"], {"non_field_errors": ["one", "two"]}),
    ],
)
def test_validation_errors_are_flattened_per_field(detail, errors):
    from rest_framework.exceptions import ValidationError

    from jobs.api.errors import error_body

    body = error_body(ValidationError(detail))
    assert (body["code"], body["errors"]) == ("invalid", errors)
    assert body["detail"].startswith("Invalid input.")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/health"),
        ("put", "/health/"),
        ("options", "/health"),
        ("delete", "/metrics"),
        ("post", "/metrics"),
        ("post", "/docs"),
        ("options", "/docs"),
        ("delete", "/api/schema"),
    ],
)
def test_other_methods_on_plain_views_are_405_json(method, path):
    """Not the CSRF failure page (nor a 500 for OPTIONS /docs): a 405 in the error shape."""
    client = Client(enforce_csrf_checks=True)  # as curl: no CSRF cookie
    response = getattr(client, method)(path)
    _is_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
