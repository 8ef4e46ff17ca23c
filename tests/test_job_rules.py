"""One set of rules for a new job (``lifecycle.check_job``), whoever asks for it.

The same bad job is refused, naming the same field, by ``POST /api/jobs`` (one and
bulk), a schedule over the API (create and edit), the job and schedule admin
forms, ``lifecycle.enqueue`` and ``schedules.save``: nothing is stored that would
fail only when it runs.
"""

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from jobs import lifecycle, schedules
from jobs.exceptions import InvalidJob, InvalidSchedule, UnknownTask
from jobs.models import Job, Schedule

pytestmark = pytest.mark.django_db

DEEP: Any = "x"
for _ in range(101):
    DEEP = [DEEP]

# (task, payload, field the error names): each breaks one rule of a new job.
BAD_PAYLOADS = {
    "too large": ("echo", "x" * 200, "payload"),
    "nested too deep": ("echo", DEEP, "payload"),
    "NUL character": ("echo", {"note": "a\x00b"}, "payload"),
    "task schema: send_email without to": (
        "send_email",
        {"subject": "Hi", "body": "text"},
        "payload.to",
    ),
    "task schema: host not allowed": (
        "http_request",
        {"url": "https://not-allowed.example/hook"},
        "payload.url",
    ),
}


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.JOBS_MAX_PAYLOAD_BYTES = 100
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["allowed.example"]


def _admin_form(task: str, payload: Any, **fields: Any) -> dict[str, Any]:
    import json

    return {"task": task, "payload": json.dumps(payload), **fields}


def via_api_job(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    response = api.post("/api/jobs", {"task": task, "payload": payload}, format="json")
    assert response.status_code == 400, response.content
    return response.json()["errors"]


def via_api_bulk(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    body = [{"task": "echo", "payload": 1}, {"task": task, "payload": payload}]
    response = api.post("/api/jobs", body, format="json")
    assert response.status_code == 400, response.content
    return {key.removeprefix("1."): texts for key, texts in response.json()["errors"].items()}


def via_api_schedule(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    body = {"name": "s", "cron": "0 3 * * *", "task": task, "payload": payload}
    response = api.post("/api/schedules", body, format="json")
    assert response.status_code == 400, response.content
    assert not Schedule.objects.exists()
    return response.json()["errors"]


def via_api_schedule_edit(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    schedule = schedules.save(Schedule(name="s", cron="0 3 * * *", task="echo"))
    body = {"task": task, "payload": payload}
    response = api.patch(f"/api/schedules/{schedule.pk}", body, format="json")
    assert response.status_code == 400, response.content
    schedule.refresh_from_db()
    assert (schedule.task, schedule.payload) == ("echo", None)
    return response.json()["errors"]


def via_python(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    with pytest.raises(InvalidJob) as caught:
        lifecycle.enqueue(task=task, payload=payload)
    return caught.value.errors


def via_schedules_save(api: Any, task: str, payload: Any) -> dict[str, list[str]]:
    with pytest.raises(InvalidSchedule) as caught:
        schedules.save(Schedule(name="s", cron="0 3 * * *", task=task, payload=payload))
    assert not Schedule.objects.exists()
    return caught.value.errors


def _form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form again, with the errors"
    form = response.context["adminform"].form
    return {field: [str(m) for m in messages] for field, messages in form.errors.items()}


def via_admin_job(client: Any, task: str, payload: Any) -> dict[str, list[str]]:
    form = _admin_form(task, payload, queue="default", priority=0, max_attempts=3)
    form |= {"history-TOTAL_FORMS": 0, "history-INITIAL_FORMS": 0}
    return _form_errors(client.post(reverse("admin:jobs_job_add"), form))


def via_admin_schedule(client: Any, task: str, payload: Any) -> dict[str, list[str]]:
    form = _admin_form(task, payload, name="s", cron="0 3 * * *", timezone="UTC", enabled="on")
    errors = _form_errors(client.post(reverse("admin:jobs_schedule_add"), form))
    assert not Schedule.objects.exists()
    return errors


API_PATHS = [via_api_job, via_api_bulk, via_api_schedule, via_api_schedule_edit]
CORE_PATHS = [via_python, via_schedules_save]
ADMIN_PATHS = [via_admin_job, via_admin_schedule]


@pytest.mark.parametrize("case", BAD_PAYLOADS)
@pytest.mark.parametrize("path", API_PATHS + CORE_PATHS, ids=lambda f: f.__name__)
def test_every_way_in_refuses_the_same_bad_job(api, case, path: Callable[..., Any]):
    task, payload, field = BAD_PAYLOADS[case]
    errors = path(api, task, payload)
    assert field in errors, errors
    assert not Job.objects.exists()


@pytest.mark.parametrize("case", BAD_PAYLOADS)
@pytest.mark.parametrize("path", ADMIN_PATHS, ids=lambda f: f.__name__)
def test_the_admin_forms_refuse_the_same_bad_job(client, user, case, path):
    client.force_login(user)
    task, payload, field = BAD_PAYLOADS[case]
    errors = path(client, task, payload)
    # A nested field's message sits on its form field, naming the inner field.
    top, _, inner = field.partition(".")
    assert top in errors and (not inner or errors[top][0].startswith(f"{inner}: ")), errors
    assert not Job.objects.exists()


def test_a_good_payload_passes_every_way_in(api):
    payload = {"url": "https://allowed.example/hook"}
    job = {"task": "http_request", "payload": payload}
    assert api.post("/api/jobs", job, format="json").status_code == 201
    body = {"name": "s", "cron": "0 3 * * *", "task": "http_request", "payload": payload}
    assert api.post("/api/schedules", body, format="json").status_code == 201
    lifecycle.enqueue(task="http_request", payload=payload)
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 101}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0.01}, "timeout"),
        ({"queue": "no spaces"}, "queue"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ],
)
def test_python_enqueue_refuses_options_out_of_range(options, field):
    with pytest.raises(InvalidJob) as caught:
        lifecycle.enqueue(task="echo", **options)
    assert list(caught.value.errors) == [field]
    with pytest.raises(InvalidJob) as caught:
        lifecycle.enqueue_many([{"task": "echo"}, {"task": "echo", **options}])
    assert list(caught.value.errors) == [f"1.{field}"]
    assert not Job.objects.exists()


def test_unknown_task_is_an_invalid_job_naming_task():
    with pytest.raises(UnknownTask) as caught:
        lifecycle.check_job(task="nope")
    assert isinstance(caught.value, InvalidJob) and "task" in caught.value.errors


def test_admin_job_form_refuses_a_priority_out_of_range(client, user):
    """The database's range constraint is never what refuses it (that was a 500)."""
    client.force_login(user)
    form = _admin_form("echo", 1, queue="default", priority=500, max_attempts=3)
    form |= {"history-TOTAL_FORMS": 0, "history-INITIAL_FORMS": 0}
    errors = _form_errors(client.post(reverse("admin:jobs_job_add"), form))
    assert "priority" in errors
    assert not Job.objects.exists()


def test_django_tasks_backend_refuses_arguments_the_queue_cannot_store(settings):
    """A NUL character in an argument is refused before it reaches the database."""
    from tests.django_tasks import add

    with pytest.raises(InvalidJob) as caught:
        add.enqueue("a\x00b")
    assert "payload" in caught.value.errors
    assert not Job.objects.exists()


def test_a_schedule_whose_job_became_invalid_queues_nothing_and_moves_on(settings):
    """The rules may change after a schedule is saved: its fire time is logged and passes."""
    from datetime import timedelta

    payload = {"url": "https://allowed.example/"}
    schedule = schedules.save(
        Schedule(name="s", cron="* * * * *", task="http_request", payload=payload)
    )
    settings.JOBS_HTTP_ALLOWED_HOSTS = []
    due = schedule.next_fire_at
    assert schedules.tick(now=due + timedelta(seconds=1)) == 0
    schedule.refresh_from_db()
    assert schedule.next_fire_at > due and not Job.objects.exists()
