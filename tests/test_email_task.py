"""The ``send_email`` task: through the locmem backend and one real SMTP round trip."""

from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from jobs import lifecycle, runner
from jobs.models import Job, Status
from jobs.tasks.builtin.send_email import send_email
from tests.helpers import free_port

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


class Sink:
    """An SMTP server's handler: accepts every message, refuses the ``refused`` recipients
    (550) and counts every recipient it was asked for."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.envelopes: list[Any] = []
        self.refused = refused
        self.asked: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.asked.append(address)
        if address in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

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


@pytest.mark.slow
def test_a_refused_recipient_fails_the_job_at_once_in_a_real_worker(processes, make_job):
    """README: up to 5 attempts, but refused recipients fail at once. A runworker process
    sends through this service's DJANGO_EMAIL_* settings to an SMTP server that refuses
    the address: one attempt, failed, nothing delivered."""
    sink = Sink(refused=frozenset({"nobody@example.com"}))
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        payload = {"to": "nobody@example.com", "subject": "s", "body": "b"}
        job = make_job(task="send_email", payload=payload)
        assert job.max_attempts == 5
        env = {"DJANGO_EMAIL_HOST": "127.0.0.1", "DJANGO_EMAIL_PORT": str(controller.port)}
        worker = processes.worker("--once", env=env)
        assert worker.wait(timeout=60) == 0, processes.output(worker)
    finally:
        controller.stop()
    job.refresh_from_db()
    assert (job.status, job.attempts, job.run_after) == (Status.FAILED, 1, None), job.error
    assert job.error.startswith("jobs.exceptions.PermanentFailure: SMTPRecipientsRefused: ")
    assert "nobody@example.com" in job.error and "No such user here" in job.error
    assert sink.asked == ["nobody@example.com"] and sink.envelopes == []


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
