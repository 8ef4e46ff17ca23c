"""The public Python API (``from jobs import enqueue, ...``, in ``jobs.shortcuts``).

Each rule of a new job refuses the same job, with the same errors, from Python as
from ``POST /api/jobs``; each function does what the README says; a job of a
built-in task reads back through ``django.tasks``' ``get_result``.
"""

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist

import jobs
from jobs import cancel, enqueue, enqueue_many, get_job, http_request, retry, send_email
from jobs.exceptions import InvalidJob, JobNotFound, TransitionRefused, UnknownTask
from jobs.models import Job
from jobs.testing import run_jobs
from tests.conftest import run_python

pytestmark = pytest.mark.django_db

DEEP: Any = "x"
for _ in range(101):
    DEEP = [DEEP]


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.JOBS_MAX_PAYLOAD_BYTES = 300
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["allowed.example"]


def api_errors(api: Any, body: Any) -> dict[str, list[str]]:
    response = api.post("/api/jobs", body, format="json")
    assert response.status_code == 400, response.content
    return response.json()["errors"]


def python_errors(call: Any, **arguments: Any) -> dict[str, list[str]]:
    with pytest.raises(InvalidJob) as caught:
        call(**arguments)
    return caught.value.errors


# (task, payload): each breaks one rule; the API and Python must give the same errors.
BAD_JOBS = {
    "payload too large": ("echo", "x" * 400),
    "payload nested too deep": ("echo", DEEP),
    "payload with a NUL character": ("echo", {"note": "a\x00b"}),
    "unknown task": ("no.such.task", None),
    "send_email schema: no to": ("send_email", {"subject": "Hi", "body": "text"}),
    "send_email schema: bad address": ("send_email", {"to": "nope", "subject": "s", "body": ""}),
    "send_email schema: unknown key": (
        "send_email",
        {"to": "a@example.com", "subject": "s", "body": "", "bogus": 1},
    ),
    "http_request allow-list": ("http_request", {"url": "https://evil.example/hook"}),
    "http_request not http": ("http_request", {"url": "ftp://allowed.example/x"}),
    "http_request json and body": (
        "http_request",
        {"url": "https://allowed.example/", "json": {}, "body": "x"},
    ),
}


@pytest.mark.parametrize("case", BAD_JOBS)
def test_enqueue_refuses_what_the_api_refuses_with_the_same_errors(api, case):
    task, payload = BAD_JOBS[case]
    expected = api_errors(api, {"task": task, "payload": payload})
    assert python_errors(enqueue, task=task, payload=payload) == expected
    bulk = [{"task": "echo"}, {"task": task, "payload": payload}]
    assert python_errors(enqueue_many, jobs=bulk) == api_errors(api, bulk)
    assert not Job.objects.exists()


def test_unknown_task_is_unknown_task():
    with pytest.raises(UnknownTask):
        enqueue(task="no.such.task")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 101}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0.01}, "timeout"),
        ({"queue": "no spaces"}, "queue"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ],
)
def test_options_out_of_range_are_refused_naming_the_same_field(api, options, field):
    assert list(api_errors(api, {"task": "echo", **options})) == [field]
    assert list(python_errors(enqueue, task="echo", **options)) == [field]
    helper = python_errors(send_email, to="a@example.com", subject="s", body="b", **options)
    assert list(helper) == [field]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "datetime"),
        ({"ratio": math.nan}, "nan"),
        ({"ratio": math.inf}, "inf"),
        ({"ids": {1, 2}}, "set"),
        (("a\x00b",), "NUL"),  # a tuple is a JSON list: its strings are checked too
    ],
)
def test_a_payload_that_is_not_json_is_an_invalid_job(payload, needle):
    """No HTTP body holds these; from Python they were a TypeError, or a row PostgreSQL
    refuses (NaN, NUL)."""
    errors = python_errors(enqueue, task="echo", payload=payload)
    assert list(errors) == ["payload"] and needle in errors["payload"][0], errors
    assert not Job.objects.exists()


# -- the built-in tasks' helpers ------------------------------------------------------------


def test_send_email_queues_the_task_and_sends_through_the_projects_mailer(settings):
    settings.DEFAULT_FROM_EMAIL = "shop@example.com"
    job = send_email(
        to=("ada@example.com", "bob@example.com"),
        subject="Your order",
        body="Shipped.",
        html="<p>Shipped.</p>",
        cc="cc@example.com",
        reply_to=["help@example.com"],
        queue="mail",
        priority=5,
        max_attempts=2,
    )
    assert (job.task, job.queue, job.priority, job.max_attempts) == ("send_email", "mail", 5, 2)
    assert job.payload == {
        "to": ["ada@example.com", "bob@example.com"],
        "subject": "Your order",
        "body": "Shipped.",
        "html": "<p>Shipped.</p>",
        "cc": "cc@example.com",
        "reply_to": ["help@example.com"],
    }
    [ran] = run_jobs()
    assert ran.status == "done", ran.error
    [message] = mail.outbox
    assert (message.to, message.cc, message.from_email) == (
        ["ada@example.com", "bob@example.com"],
        ["cc@example.com"],
        "shop@example.com",
    )


def test_send_email_from_email_is_the_payloads_from():
    job = send_email(to="a@example.com", subject="s", body="", from_email="me@example.com")
    assert job.payload["from"] == "me@example.com"


def test_send_email_refuses_what_the_api_refuses(api):
    payload = {"to": ["not-an-address"], "subject": "", "body": "b"}
    expected = api_errors(api, {"task": "send_email", "payload": payload})
    assert python_errors(send_email, to=["not-an-address"], subject="", body="b") == expected
    assert not Job.objects.exists()


def test_http_request_queues_the_task_with_its_payload_and_job_options():
    job = http_request(
        url="https://allowed.example/hook",
        method="POST",
        headers={"X-Token": "t"},
        json={"order": 42},
        request_timeout=5,
        expected_status=[200, 202],
        timeout=30,
    )
    assert job.payload == {
        "method": "POST",
        "url": "https://allowed.example/hook",
        "headers": {"X-Token": "t"},
        "json": {"order": 42},
        "timeout": 5,
        "expected_status": [200, 202],
    }
    assert (job.task, job.timeout) == ("http_request", 30)


@pytest.mark.parametrize(
    "arguments",
    [
        {"url": "https://evil.example/hook"},
        {"url": "https://allowed.example/", "method": "BREW"},
        {"url": "https://allowed.example/", "headers": {"Bad\r\nName": "x"}},
        {"url": "https://allowed.example/", "json": [1], "body": "x"},
        {"url": "https://allowed.example/", "timeout": 1000},
        {"url": "https://allowed.example/", "expected_status": 99},
    ],
)
def test_http_request_refuses_what_the_api_refuses(api, arguments):
    expected = api_errors(api, {"task": "http_request", "payload": arguments})
    as_helper = {("request_timeout" if k == "timeout" else k): v for k, v in arguments.items()}
    assert python_errors(http_request, **as_helper) == expected
    assert not Job.objects.exists()


def test_http_request_host_allow_list_follows_the_setting(settings):
    with pytest.raises(InvalidJob):
        http_request(url="https://later.example/")
    settings.JOBS_HTTP_ALLOWED_HOSTS = [".later.example"]
    assert http_request(url="https://api.later.example/").task == "http_request"


# -- enqueue, enqueue_many ------------------------------------------------------------------


def test_enqueue_takes_every_option_and_returns_the_job():
    when = datetime.now(UTC) + timedelta(hours=1)
    job = enqueue(
        task="echo",
        payload={"n": 1},
        queue="q1",
        priority=-3,
        run_after=when,
        max_attempts=7,
        timeout=2.5,
        idempotency_key="order-1",
    )
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.payload, stored.queue, stored.priority) == (
        "queued",
        {"n": 1},
        "q1",
        -3,
    )
    assert (stored.run_after, stored.max_attempts, stored.timeout) == (when, 7, 2.5)
    assert enqueue(task="echo", idempotency_key="order-1").pk == job.pk
    assert Job.objects.count() == 1


def test_enqueue_needs_a_task_and_keywords():
    with pytest.raises(TypeError):
        enqueue()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        enqueue("echo")  # type: ignore[misc]


def test_enqueue_takes_a_naive_run_after_in_the_current_time_zone(settings):
    settings.TIME_ZONE = "Europe/Paris"
    job = enqueue(task="echo", run_after=datetime(2030, 1, 1, 12, 0))
    assert Job.objects.get(pk=job.pk).run_after == datetime(2030, 1, 1, 11, 0, tzinfo=UTC)


def test_enqueue_inside_a_transaction_rolls_back_with_it():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(task="echo")
        raise RuntimeError("the caller's work failed")
    assert not Job.objects.exists()


def test_enqueue_many_queues_all_in_order():
    created = enqueue_many(jobs=({"task": "echo", "payload": n, "queue": "bulk"} for n in range(3)))
    assert [job.payload for job in created] == [0, 1, 2]
    assert Job.objects.filter(queue="bulk").count() == 3
    assert enqueue_many(jobs=[]) == []


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        ({"payload": 1}, {"1.task": ["This field is required."]}),
        ({"task": "echo", "tsk": 1}, {"1.tsk": ["Unknown field."]}),
        (
            {"task": "echo", "idempotency_key": "k"},
            {"1.idempotency_key": ["Not supported in a bulk enqueue."]},
        ),
        ("echo", {"1": ["Give a mapping of enqueue()'s arguments."]}),
    ],
)
def test_enqueue_many_refuses_malformed_specs_all_or_nothing(spec, errors):
    with pytest.raises(InvalidJob) as caught:
        enqueue_many(jobs=[{"task": "echo"}, spec])
    assert caught.value.errors == errors
    assert not Job.objects.exists()


# -- get_job, cancel, retry -----------------------------------------------------------------


def test_get_job_by_uuid_or_string():
    job = enqueue(task="echo", payload=1)
    assert get_job(job_id=job.pk).payload == 1
    assert get_job(job_id=str(job.pk)).pk == job.pk


@pytest.mark.parametrize(
    "job_id", [uuid.UUID(int=0), "00000000-0000-0000-0000-000000000000", "nope", ""]
)
@pytest.mark.parametrize("call", [get_job, cancel, retry], ids=lambda f: f.__name__)
def test_an_unknown_or_malformed_id_is_job_not_found(call, job_id):
    with pytest.raises(JobNotFound) as caught:
        call(job_id=job_id)
    assert isinstance(caught.value, LookupError)


def test_cancel_then_retry():
    job = enqueue(task="echo", payload=1)
    assert cancel(job_id=job.pk).status == "cancelled"
    with pytest.raises(TransitionRefused) as caught:
        cancel(job_id=job.pk)
    assert caught.value.current == "cancelled"
    assert retry(job_id=str(job.pk)).status == "queued"
    with pytest.raises(TransitionRefused) as caught:
        retry(job_id=job.pk)
    assert caught.value.current == "queued"
    [ran] = run_jobs()
    assert (ran.status, ran.result) == ("done", 1)


# -- the package: lazy names, and get_result ------------------------------------------------


@pytest.mark.slow
def test_importing_jobs_imports_no_models_before_django_is_set_up():
    """Django imports the app package while apps load: ``import jobs`` must not touch models."""
    code = (
        "import sys, jobs\n"
        "assert not [m for m in sys.modules if m.startswith('jobs.')], sys.modules\n"
        "assert sorted(jobs.__all__) == sorted(n for n in dir(jobs) if not n.startswith('_')"
        " and n not in ('import_module', 'TYPE_CHECKING', 'Any'))\n"
        "import django; django.setup()\n"
        "from jobs import enqueue, send_email\n"
        "from jobs.shortcuts import enqueue as direct\n"
        "assert enqueue is direct\n"
        "try:\n    jobs.nothing_here\nexcept AttributeError:\n    print('ok')\n"
    )
    env = {"DJANGO_SETTINGS_MODULE": "jobqueue.settings", "PATH": "/usr/bin:/bin"}
    done = run_python(code, env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_every_public_name_is_exported():
    assert set(jobs.__all__) == {
        "enqueue",
        "enqueue_many",
        "send_email",
        "http_request",
        "get_job",
        "cancel",
        "retry",
        "pause_queue",
        "resume_queue",
        "queue_state",
        "enqueue_workflow",
        "chain",
        "group",
        "workflow_state",
        "cancel_workflow",
    }


def test_get_result_reads_a_built_in_tasks_job():
    """A job of a registered task reads back as a TaskResult: its task is the registered
    function, its one argument the payload."""
    job = send_email(to="ada@example.com", subject="s", body="b")
    result = default_task_backend.get_result(str(job.pk))
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([job.payload], {})
    assert result.task.module_path == "jobs.tasks.builtin.send_email.send_email"
    assert (result.task.queue_name, result.backend) == ("default", "default")
    run_jobs()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"sent": 1, "to": ["ada@example.com"]}


def test_get_result_of_a_failed_built_in_job_has_its_errors():
    job = enqueue(task="test.fail", payload="x", max_attempts=1)
    run_jobs()
    result = default_task_backend.get_result(str(job.pk))
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class is ValueError


def test_get_result_of_a_job_whose_task_is_gone_says_why():
    job = enqueue(task="echo")
    Job.objects.filter(pk=job.pk).update(task="gone.away")
    with pytest.raises(TaskResultDoesNotExist, match=r"'gone\.away'.*jobs\.get_job"):
        default_task_backend.get_result(str(job.pk))
