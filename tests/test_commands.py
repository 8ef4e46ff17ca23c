"""The set-up commands: bootstrap, and serve (what `make run` starts)."""

import json
import os
import signal
import subprocess
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from jobs import lifecycle
from jobs.models import Job, Status
from jobs.models import Worker as WorkerRow
from tests.conftest import ROOT, database_url, wait_for
from tests.helpers import free_port, listening


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


# GNU make stops and then dies of the SIGTERM it was sent, as its status: -15 to Popen, 143
# in a shell.
MAKE_EXIT_ON_SIGTERM = -signal.SIGTERM


def start_make_run(processes, port: int, env: dict[str, str]) -> subprocess.Popen:
    """``make run`` in its own process group (as a terminal's job is), output to a file."""
    log = processes.log_dir / "make-run.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log = log  # type: ignore[attr-defined]
    processes.started.append(proc)
    return proc


def start_running(
    processes, how: str, port: int, seconds: int, *options: str
) -> tuple[subprocess.Popen, Job]:
    """Start ``serve`` (or ``make run``) with a job of ``seconds`` running in its worker."""
    env = {"JOBS_TASK_MODULES": "tests.tasks", "JOBS_SIMULATE_SECONDS": str(seconds)}
    if how == "make":
        proc = start_make_run(processes, port, env)
    else:
        proc = processes.manage(
            "serve", "--port", str(port), "--web-workers", "1", *options, env=env
        )
    job = lifecycle.enqueue(task="simulate", payload="shut down gently")[0]
    wait_for(lambda: Job.objects.filter(pk=job.pk, started_at__isnull=False).exists(), timeout=90)
    return proc, job


@pytest.mark.slow
@pytest.mark.parametrize("how", ["serve", "make"])
def test_one_sigterm_to_the_process_group_lets_the_running_job_finish(processes, how):
    """One SIGTERM to the whole process group (what a terminal's Ctrl-C or `kill -TERM -PGID`
    does) is one graceful stop: the worker is signalled once, by serve, and its running
    job finishes; the web server and the worker exit 0."""
    proc, job = start_running(processes, how, free_port(), seconds=3)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    output = processes.output(proc)
    assert "Stopped (exit codes [0, 0])." in output, output
    assert "stopping now" not in output, output
    job.refresh_from_db()
    assert job.status == Status.DONE, output
    # serve exits 0; make reports the signal it got as its own status (README).
    assert proc.returncode == (0 if how == "serve" else MAKE_EXIT_ON_SIGTERM), output


@pytest.mark.slow
def test_a_job_still_running_at_the_shutdown_timeout_goes_back_to_the_queue(processes):
    """serve gives its workers their own shutdown timeout: a job still running then is
    stopped and put back in the queue by its worker, which exits 0; nothing is killed
    from outside, so nothing is left processing for lease recovery to run again."""
    proc, job = start_running(processes, "serve", free_port(), 60, "--shutdown-timeout", "1")
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, processes.output(proc)
    output = processes.output(proc)
    assert time.monotonic() - started < 30
    assert "Stopped (exit codes [0, 0])." in output, output
    job.refresh_from_db()
    assert (job.status, job.worker_id, job.attempts) == (Status.QUEUED, None, 1), output


@pytest.mark.slow
def test_a_stop_while_the_workers_start_is_a_graceful_stop(processes):
    """A SIGTERM the moment the web server listens, while the worker is still booting,
    waits for the worker's handlers (serve starts it with the stop signals blocked): the
    worker stops cleanly instead of dying by the signal."""
    env = {"JOBS_TASK_MODULES": "tests.slow_boot"}  # each process boots for 3 s more
    proc = processes.manage("serve", "--port", "8347", "--web-workers", "1", env=env)
    wait_for(lambda: "Listening at" in processes.output(proc), timeout=60)
    assert "started" not in processes.output(proc)  # the worker is still importing
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, processes.output(proc)
    output = processes.output(proc)
    assert "Stopped (exit codes [0, 0])." in output, output


@pytest.mark.slow
def test_a_second_signal_from_the_user_stops_at_once(processes):
    """A second signal, a moment after the first, stops the running job now: it goes
    back to the queue (its attempt counted) instead of finishing."""
    proc, job = start_running(processes, "serve", free_port(), seconds=60)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0, processes.output(proc)
    assert time.monotonic() - started < 20
    output = processes.output(proc)
    # README: the workers exit 1 (the stop was not graceful); serve itself exits 0.
    assert "Stopped (exit codes [0, 1])." in output, output
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_id) == (Status.QUEUED, 1, None), output


@pytest.mark.slow
def test_the_web_server_and_workers_stop_when_serve_is_killed(processes):
    """They run in sessions of their own, so they get a SIGTERM when serve dies (even by
    SIGKILL) rather than living on without it."""
    port = free_port()
    serve = processes.manage("serve", "--port", str(port), "--web-workers", "1")
    worker = wait_for(lambda: WorkerRow.objects.values_list("pid", flat=True).first(), timeout=60)
    wait_for(lambda: listening(port), timeout=30)
    os.kill(serve.pid, signal.SIGKILL)
    serve.wait()

    def gone() -> bool:
        try:  # exited (a zombie until its new parent reaps it), and the port closed
            exited = Path(f"/proc/{worker}/stat").read_text().split(")")[1].split()[0] == "Z"
        except FileNotFoundError:
            exited = True
        return exited and not listening(port)

    wait_for(gone, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--batch", "0"], {}, "argument --batch: 0 is below 1"),
        (["--concurrency", "x"], {}, "argument --concurrency: 'x' is not a whole number"),
        ([], {"JOBS_BATCH_SIZE": "abc"}, "JOBS_BATCH_SIZE='abc': must be an integer"),
        ([], {"JOBS_HAND_BACK_AFTER": "0"}, "JOBS_HAND_BACK_AFTER=0.0: must be above 0"),
    ],
)
def test_runworker_refuses_bad_options_and_settings_by_name(processes, args, env, message):
    worker = processes.worker("--once", *args, env=env)
    assert worker.wait(timeout=60) != 0
    output = processes.output(worker)
    assert message in output and "Traceback" not in output
