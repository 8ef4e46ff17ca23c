"""The ``send_email`` task: through the locmem backend and one real SMTP round trip."""

import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from jobs import lifecycle, runner
from jobs.models import Job, Status
from jobs.tasks.builtin.send_email import send_email

pytestmark = pytest.mark.django_db

MESSAGE = {
    "to": "ada@example.com",
    "cc": ["bob@example.com"],
    "bcc": ["eve@example.com"],
    "from": "shop@example.com",
    "subject": "Your order",
    "body": "Plain text",
    "html": "<p>HTML</p>",
}


def run(job: Job) -> Job:
    [claimed] = lifecycle.claim(worker_id="w")
    runner.execute(claimed, worker_id="w")
    return Job.objects.get(pk=job.pk)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp(settings: Any) -> Iterator[Sink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": controller.port, "timeout": 5},
        }
    }
    yield sink
    controller.stop()


def test_locmem_receives_the_message(mailoutbox, make_job):
    job = run(make_job(task="send_email", payload=MESSAGE))
    assert job.status == Status.DONE and job.result == {"sent": 1, "to": ["ada@example.com"]}
    [message] = mailoutbox
    assert (message.subject, message.body, message.from_email) == (
        "Your order",
        "Plain text",
        "shop@example.com",
    )
    assert message.to == ["ada@example.com"] and message.bcc == ["eve@example.com"]
    assert message.alternatives[0].content == "<p>HTML</p>"


def test_from_defaults_to_the_setting(mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "noreply@example.com"
    send_email({"to": "ada@example.com", "subject": "s", "body": ""})
    assert mailoutbox[0].from_email == "noreply@example.com"


def test_a_real_smtp_round_trip(smtp, make_job):
    job = run(make_job(task="send_email", payload=MESSAGE))
    assert job.status == Status.DONE, job.error
    [envelope] = smtp.envelopes
    assert envelope.mail_from == "shop@example.com"
    assert sorted(envelope.rcpt_tos) == ["ada@example.com", "bob@example.com", "eve@example.com"]
    received = message_from_bytes(envelope.content)
    assert received["Subject"] == "Your order" and "eve@" not in str(received)
    parts = {part.get_content_type(): part.get_payload() for part in received.walk()}
    assert "Plain text" in parts["text/plain"] and "<p>HTML</p>" in parts["text/html"]


def test_a_server_that_is_down_is_retried(settings, make_job):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 5},
        }
    }
    job = run(make_job(task="send_email", payload=MESSAGE))
    assert job.status == Status.QUEUED and "ConnectionRefusedError" in job.error


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "s", "body": "b"}, "to"),
        ({"to": "not-an-address", "subject": "s", "body": "b"}, "to"),
        ({"to": "a@example.com", "body": "b"}, "subject"),
        ({"to": "a@example.com", "subject": "s", "body": "b", "from": "x"}, "from"),
    ],
)
def test_bad_payloads_are_a_400(api, payload, field):
    response = api.post("/api/jobs", {"task": "send_email", "payload": payload}, format="json")
    assert response.status_code == 400
    assert any(key.startswith(f"payload.{field}") for key in response.json()["errors"])
    assert not Job.objects.exists()
