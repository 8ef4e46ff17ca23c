"""Registering tasks: defaults, payload schemas, GET /api/tasks, progress."""

import pytest
from rest_framework import serializers

from jobs import lifecycle, runner, tasks
from jobs.exceptions import InvalidPayload
from jobs.models import Job

pytestmark = pytest.mark.django_db


class ResizePayload(serializers.Serializer):
    url = serializers.URLField()
    width = serializers.IntegerField(min_value=1, help_text="Pixels.")


@tasks.register("test.resize", queue="media", priority=5, max_attempts=7, schema=ResizePayload)
def resize(payload: dict) -> dict:
    """Resize an image."""
    tasks.report_progress(50, "half way")
    return {"width": payload["width"]}


@tasks.register(
    "test.json_schema",
    schema={
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}},
        "required": ["n"],
        "additionalProperties": False,
    },
)
def json_schema_task(payload: dict) -> int:
    return payload["n"]


def test_defaults_apply_to_new_jobs():
    job, _ = lifecycle.enqueue(task="test.resize", payload={"url": "http://x.org", "width": 1})
    assert (job.queue, job.priority, job.max_attempts) == ("media", 5, 7)


@pytest.mark.parametrize(
    ("task", "payload", "where"),
    [
        ("test.resize", {"url": "nope", "width": 0}, {"url", "width"}),
        ("test.resize", None, {"non_field_errors"}),
        ("test.json_schema", {"n": -1}, {"n"}),
        ("test.json_schema", {"n": 1, "x": 2}, {"x"}),
        ("test.json_schema", "text", {"non_field_errors"}),
        ("test.json_schema", {}, {"n"}),
    ],
)
def test_schemas_refuse_bad_payloads(task, payload, where):
    with pytest.raises(InvalidPayload) as caught:
        tasks.get(task).validate_payload(payload)
    assert set(caught.value.errors) == where


def test_api_refuses_a_bad_payload_with_a_400(api):
    response = api.post(
        "/api/jobs", {"task": "test.json_schema", "payload": {"n": "x"}}, format="json"
    )
    assert response.status_code == 400
    assert "payload.n" in response.json()["errors"]
    ok = api.post("/api/jobs", {"task": "test.json_schema", "payload": {"n": 3}}, format="json")
    assert ok.status_code == 201


def test_a_bad_json_schema_is_refused_at_registration():
    with pytest.raises(Exception, match="is not valid"):
        tasks.register("test.bad_schema", schema={"type": "nonsense"})


def test_list_tasks(api):
    response = api.get("/api/tasks")
    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json()}
    assert {"simulate", "echo", "send_email", "http_request", "test.resize"} <= set(by_name)
    resize_info = by_name["test.resize"]
    assert resize_info["description"] == "Resize an image."
    assert (resize_info["queue"], resize_info["priority"], resize_info["max_attempts"]) == (
        "media",
        5,
        7,
    )
    schema = resize_info["payload_schema"]
    assert schema["required"] == ["url", "width"]
    assert schema["properties"]["width"] == {"type": "integer", "description": "Pixels."}
    assert by_name["echo"]["payload_schema"] is None
    assert by_name["http_request"]["payload_schema"]["properties"]["method"]["enum"][0] == "GET"


def test_one_task_and_an_unknown_one(api, anon):
    assert api.get("/api/tasks/test.resize").json()["name"] == "test.resize"
    assert api.get("/api/tasks/nothing").status_code == 404
    assert anon.get("/api/tasks").status_code == 401


def test_progress_shows_in_the_api(api, make_job):
    job = make_job(task="test.resize", payload={"url": "http://x.org", "width": 2})
    [claimed] = lifecycle.claim(worker_id="w")
    runner.execute(claimed, worker_id="w")
    body = api.get(f"/api/jobs/{job.pk}").json()
    assert (body["progress"], body["progress_message"]) == (50, "half way")


def test_progress_from_a_stale_holder_is_refused(make_job):
    job = make_job()
    [claimed] = lifecycle.claim(worker_id="w1")
    with tasks.running(claimed, "w2", record_progress=lifecycle.report_progress):
        assert tasks.report_progress(10) is False
    with tasks.running(claimed, "w1", record_progress=lifecycle.report_progress):
        assert tasks.report_progress(10, "ten") is True
        with pytest.raises(ValueError):
            tasks.report_progress(101)
    assert Job.objects.get(pk=job.pk).progress == 10


def test_admin_refuses_a_bad_payload(client, user):
    client.force_login(user)
    form = {
        "task": "test.json_schema",
        "payload": '{"n": -1}',
        "queue": "default",
        "priority": "0",
        "max_attempts": "3",
        "status": "queued",
        "history-TOTAL_FORMS": "0",
        "history-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/jobs/job/add/", form)
    assert response.status_code == 200 and b"minimum of 0" in response.content
    assert not Job.objects.exists()
    response = client.post("/admin/jobs/job/add/", {**form, "payload": '{"n": 1}'})
    assert response.status_code == 302 and Job.objects.get().payload == {"n": 1}
