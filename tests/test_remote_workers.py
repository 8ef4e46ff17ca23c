"""Remote workers as they run: the real server (``manage.py serve``) and the reference
client (``clients/python/jobqueue_worker.py``) or the Node example as separate OS
processes, with no Django in the workers' processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from jobs import lifecycle, tasks
from jobs.models import Job, JobAttempt, Outcome, Status, Worker
from jobs.tasks import registry
from tests.conftest import ROOT, wait_for
from tests.helpers import free_port, wait_until_serving

pytestmark = pytest.mark.slow

LEASE = 2.0
EXTERNAL = {
    "remote.record": {"queue": "remote"},
    "remote.sleep": {"max_attempts": 5},
    "remote.odd": {"max_attempts": 3},
}
HANDLERS = [
    "remote.record=remote_handlers:record",
    "remote.sleep=remote_handlers:sleep",
    "remote.odd=remote_handlers:odd",
]


@pytest.fixture
def server(processes: Any, monkeypatch: Any) -> Iterator[tuple[str, str]]:
    """``manage.py serve`` with no built-in workers, the external tasks declared in
    JOBS_EXTERNAL_TASKS and a short lease; its URL and a token holding only work_job."""
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    for name, options in EXTERNAL.items():
        tasks.register_external(name, **options)
    user = get_user_model().objects.create_user("remote", password="pw-for-tests-only")
    user.user_permissions.set(Permission.objects.filter(codename="work_job"))
    token = Token.objects.create(user=user).key
    port = free_port()
    env = {
        "JOBS_EXTERNAL_TASKS": json.dumps(EXTERNAL),
        "JOBS_LEASE_SECONDS": str(LEASE),
        "JOBS_WORKER_MAX_WAIT": "1",
        "JOBS_BACKOFF_BASE": "0",
        "GUNICORN_THREADS": "8",
    }
    serve = processes.manage(
        "serve", "--port", str(port), "--web-workers", "2", "--workers", "0", env=env
    )

    wait_until_serving(processes, serve, port)
    yield f"http://127.0.0.1:{port}", token


class Clients:
    """Reference clients started as plain Python processes (only tests/ on their path)."""

    def __init__(self, url: str, token: str, log_dir: Path) -> None:
        self.url, self.token, self.log_dir = url, token, log_dir
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        command = [
            sys.executable,
            str(ROOT / "clients/python/jobqueue_worker.py"),
            "--url",
            self.url,
            "--token",
            self.token,
            "--worker-id",
            name,
            "--wait",
            "1",
        ]
        for handler in HANDLERS:
            command += ["--task", handler]
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT / "tests"),
            "PYTHONUNBUFFERED": "1",
        }
        with open(log, "w") as handle:
            proc = subprocess.Popen(
                [*command, *args], env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        proc.log = log  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()


@pytest.fixture
def clients(server: tuple[str, str], tmp_path: Path) -> Iterator[Clients]:
    started = Clients(*server, tmp_path)
    yield started
    started.stop_all()


def status(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def sleeping_job(tmp_path: Path, seconds: float) -> tuple[Job, Path]:
    marker = tmp_path / "started"
    job, _ = lifecycle.enqueue(
        task="remote.sleep", payload={"marker": str(marker), "seconds": seconds}
    )
    return job, marker


def test_three_clients_drain_a_thousand_jobs_exactly_once(clients, tmp_path):
    """Every job runs once (the execution log) and is done; SIGTERM stops each client cleanly."""
    log = tmp_path / "executions.log"
    lifecycle.enqueue_many(
        [{"task": "remote.record", "payload": {"n": n, "log": str(log)}} for n in range(1000)]
    )
    workers = [clients.start(f"remote-{n}", "--batch", "20") for n in range(3)]
    wait_for(
        lambda: not Job.objects.exclude(status=Status.DONE).exists(), timeout=240, interval=0.5
    )
    lines = log.read_text().split()
    counts = Counter(lines[0::2])
    assert len(counts) == 1000 and set(counts.values()) == {1}
    assert len(set(lines[1::2])) == 3, "all three clients worked"
    assert set(Worker.objects.values_list("pk", flat=True)) >= {f"remote-{n}" for n in range(3)}
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(timeout=30) == 0, proc.log.read_text()


def test_a_killed_client_s_job_is_recovered_and_completed_by_another(clients, tmp_path):
    job, marker = sleeping_job(tmp_path, 1.0)
    first = clients.start("doomed")
    wait_for(marker.exists)
    first.kill()  # SIGKILL mid-job: no release, no report
    first.wait()
    marker.unlink()
    second = clients.start("rescuer")
    wait_for(lambda: status(job) == Status.DONE, timeout=30)
    done = Job.objects.get(pk=job.pk)
    assert done.worker_id == "rescuer" and done.result == {"pid": second.pid}
    lost = JobAttempt.objects.get(job=job)
    assert (lost.worker_id, lost.outcome) == ("doomed", Outcome.LOST)


def test_a_paused_client_s_late_report_is_refused(clients, tmp_path):
    """SIGSTOP past the lease: another attempt completes; the late success is a 409 and the
    newer attempt's result is kept."""
    job, marker = sleeping_job(tmp_path, 1.0)
    paused = clients.start("paused")
    wait_for(marker.exists)
    paused.send_signal(signal.SIGSTOP)
    marker.unlink()
    other = clients.start("other")
    wait_for(lambda: status(job) == Status.DONE, timeout=30)
    paused.send_signal(signal.SIGCONT)
    wait_for(lambda: "report refused" in paused.log.read_text(), timeout=20)
    done = Job.objects.get(pk=job.pk)
    assert done.worker_id == "other" and done.result == {"pid": other.pid}
    # The paused attempt is in the history as lost. Attempt numbers may be higher than 2: a
    # long poll a client of an earlier test sent just before it was killed may still claim
    # the job (then lost after a lease), or on a loaded machine "other"'s 2 s lease may lapse.
    lost = list(done.history.filter(outcome="lost").values_list("worker_id", flat=True))
    assert "paused" in lost and done.attempts >= 2


def test_a_cancelled_job_is_reported_at_the_next_heartbeat(clients, tmp_path):
    job, marker = sleeping_job(tmp_path, 4.0)
    worker = clients.start("holder")
    wait_for(marker.exists)
    lifecycle.cancel(job_id=job.pk)
    wait_for(lambda: f"job {job.pk} was taken away" in worker.log.read_text(), timeout=LEASE)
    wait_for(lambda: "report refused" in worker.log.read_text(), timeout=10)
    assert status(job) == Status.CANCELLED


def test_the_node_example_completes_a_job(server, tmp_path):
    """examples/node-worker.mjs (Node 20's fetch) claims a job and completes it."""
    node = shutil.which("node")
    assert node, "node is needed for this test (Node 20 is on every supported machine)"
    url, token = server
    job, _ = lifecycle.enqueue(task="remote.record", payload={"n": 7, "log": "unused"})
    env = {
        "PATH": os.environ["PATH"],
        "JOBQUEUE_URL": url,
        "JOBQUEUE_TOKEN": token,
        "JOBQUEUE_TASK": "remote.record",
        "JOBQUEUE_ONCE": "1",
    }
    done = subprocess.run(
        [node, str(ROOT / "examples/node-worker.mjs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    finished = Job.objects.get(pk=job.pk)
    assert finished.status == Status.DONE and finished.result == {"n": 7, "by": "node"}


def test_the_client_fails_for_good_what_cannot_succeed(clients):
    """A result that is not JSON, a PermanentFailure (imported as the README says) and a
    result the server refuses as too large each fail the job at its first attempt, saying
    why, instead of crashing the client or running the job again."""
    jobs = {
        kind: lifecycle.enqueue(task="remote.odd", payload={"kind": kind})[0]
        for kind in ("not json", "permanent", "too large")
    }
    clients.start("odd")
    wait_for(lambda: all(status(job) == Status.FAILED for job in jobs.values()), timeout=60)
    ended = {kind: Job.objects.get(pk=job.pk) for kind, job in jobs.items()}
    assert {kind: job.attempts for kind, job in ended.items()} == dict.fromkeys(jobs, 1)
    assert ended["not json"].error.startswith("the result is not JSON")
    assert ended["permanent"].error == "PermanentFailure: no use trying again"
    assert ended["too large"].error.startswith("the server refused the result: 400")
