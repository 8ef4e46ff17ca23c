"""The set-up commands: bootstrap, and serve (what `make run` starts)."""

import json
import os
import signal
import socket
import time
import urllib.request
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from jobs.models import Job, Status
from jobs.models import Worker as WorkerRow
from tests.conftest import wait_for


@pytest.mark.django_db
def test_bootstrap_creates_the_first_user_once():
    out = StringIO()
    call_command("bootstrap", stdout=out)
    user = get_user_model().objects.get()
    token = Token.objects.get(user=user)
    password = out.getvalue().split("admin / ")[1].split()[0]
    assert user.username == "admin" and user.is_superuser and user.check_password(password)
    assert token.key in out.getvalue()
    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "nothing to bootstrap" in again.getvalue()
    assert get_user_model().objects.count() == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, token: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_serve_runs_api_and_worker_and_stops_on_sigterm(processes, user):
    token = Token.objects.create(user=user).key
    port = free_port()
    serve = processes.manage(
        "serve", "--port", str(port), "--web-workers", "1", env={"JOBS_SIMULATE_SECONDS": "0.1"}
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return request(f"{base}/health", token)["status"] == "ok"
        except OSError:
            return False

    wait_for(healthy, timeout=30)
    job = request(f"{base}/api/jobs", token, {"payload": "from curl"})
    assert job["status"] == "queued"
    done = wait_for(
        lambda: (j := request(f"{base}/api/jobs/{job['id']}", token))["status"] == "done" and j
    )
    assert done["result"] == {"processed": "from curl", "length": 9}
    stopped = time.monotonic()
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0, processes.output(serve)
    assert time.monotonic() - stopped < 15


@pytest.mark.slow
def test_serve_restarts_a_worker_that_dies_and_keeps_serving(processes, user):
    token = Token.objects.create(user=user).key
    port = free_port()
    serve = processes.manage("serve", "--port", str(port), "--web-workers", "1")
    first = wait_for(lambda: WorkerRow.objects.values_list("pid", flat=True).first(), timeout=30)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: WorkerRow.objects.exclude(pid=first).exists(), timeout=30)
    assert serve.poll() is None, processes.output(serve)
    assert request(f"http://127.0.0.1:{port}/health", token)["status"] == "ok"
    job = request(f"http://127.0.0.1:{port}/api/jobs", token, {"task": "echo", "payload": 1})
    wait_for(lambda: Job.objects.filter(pk=job["id"], status=Status.DONE).exists())
    assert "restarting" in processes.output(serve)
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0, processes.output(serve)
