"""Helpers shared by the test modules: jobs in every status, free ports, HTTP calls.

Fixtures live in ``conftest.py``; these are plain functions a test calls.
"""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from jobs import lifecycle
from jobs.models import Job, Status
from tests.conftest import ROOT, wait_for

ALL = [s.value for s in Status]


def put_in(status: str, make_job: Callable[..., Job]) -> Job:
    """Create a job and drive it to ``status`` through the lifecycle."""
    if status == Status.WAITING:
        return waiting_job()
    job = make_job(max_attempts=1)
    if status == Status.QUEUED:
        return job
    (job,) = lifecycle.claim(worker_id="w1")
    if status == Status.DONE:
        lifecycle.succeed(job=job, worker_id="w1", result=1)
    elif status == Status.FAILED:
        lifecycle.fail(job=job, worker_id="w1", error="x")
    elif status == Status.CANCELLED:
        lifecycle.cancel(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == status
    return job


def waiting_job() -> Job:
    """A job waiting for its parent, which is held (processing) by hand, so that no claim
    takes it."""
    workflow = lifecycle.enqueue_workflow(
        jobs=[
            {"name": "parent", "task": "echo"},
            {"name": "child", "task": "echo", "after": ["parent"], "max_attempts": 1},
        ]
    )
    lifecycle.claim_for_hand(job_id=workflow.jobs.get(step="parent").pk)
    return workflow.jobs.get(step="child")


def callback_group(log: Path, members: list[dict], name: str = "") -> Any:
    """A workflow of ``members`` (dicts of name, task, payload) and a callback after all
    of them, which runs whatever their outcomes and writes how many it got to ``log``."""
    callback = {
        "name": "callback",
        "task": "test.collect",
        "payload": {"path": str(log)},
        "after": [m["name"] for m in members],
        "on_parent_failure": "run",
    }
    return lifecycle.enqueue_workflow(jobs=[*members, callback], name=name)


def one_of_each(make_job: Callable[..., Job]) -> dict[str, Job]:
    """One job per status (the queued one last, so no claim takes it)."""
    return {status: put_in(status, make_job) for status in reversed(ALL)}


def manage(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    """Run ``manage.py`` with exactly ``env`` and wait; return its output (fail on an error)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def free_port() -> int:
    """A loopback port nothing listens on: bound by this process, then closed.

    Connecting to it is refused (until something else happens to take it).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until_serving(
    processes: Any, proc: subprocess.Popen, port: int, timeout: float = 60
) -> None:
    """Wait until ``proc`` (started by ``processes``) accepts connections on the loopback
    ``port``; fail at once, with its output, if it exits first."""

    def up() -> bool:
        assert proc.poll() is None, processes.output(proc)
        return listening(port)

    wait_for(up, timeout=timeout)


def http(
    method: str,
    port: int,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    chunk_size: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One real HTTP request to 127.0.0.1:``port``; return (status, headers, body).

    ``body`` is sent as JSON unless it is ``bytes``. With ``chunk_size`` it goes
    out with ``Transfer-Encoding: chunked`` in pieces of that many bytes and no
    ``Content-Length``, so the server must join the chunks to read it. The answer's
    body is decoded JSON, or text when it is not JSON.
    """
    sent = {"Content-Type": "application/json"} if body is not None else {}
    sent |= headers or {}
    if token:
        sent["Authorization"] = f"Token {token}"
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    data: Any = raw
    if chunk_size and raw is not None:
        data = (raw[i : i + chunk_size] for i in range(0, len(raw), chunk_size))
    connection = HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=sent, encode_chunked=bool(chunk_size))
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    try:
        return response.status, dict(response.headers), json.loads(answer)
    except ValueError:
        return response.status, dict(response.headers), answer.decode(errors="replace")


def service(url: str, **settings: str) -> tuple[dict[str, str], str]:
    """Migrate the database at ``url`` and create its first user: the environment for
    ``manage.py`` on it (with ``settings``) and the API token."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JOBS_TASK_MODULES": "tests.tasks",
        "JOBS_WRITE_RATE": "none",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes its own
    manage("migrate", "--noinput", env=env)
    return env, manage("bootstrap", env=env).split("API token:")[1].split()[0]


def serve(env: dict[str, str], port: int, log: Path, *options: str) -> subprocess.Popen:
    """``manage.py serve`` on ``port`` in a session of its own, its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), *options],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_other_connections() -> int:
    """Drop every other connection to the test database from the server side, as a
    restart would (PostgreSQL: pg_terminate_backend; MariaDB/MySQL: KILL); return how many."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            ids = [int(pid) for (pid,) in cursor.fetchall()]
            for pid in ids:
                cursor.execute(f"KILL CONNECTION {pid}")
            return len(ids)
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.rowcount
