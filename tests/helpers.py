"""Helpers shared by the test modules: jobs in every status, free ports, HTTP calls.

Fixtures live in ``conftest.py``; these are plain functions a test calls.
"""

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from jobs import lifecycle
from jobs.models import Job, Status

ALL = [s.value for s in Status]


def put_in(status: str, make_job: Callable[..., Job]) -> Job:
    """Create a job and drive it to ``status`` through the lifecycle."""
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


def one_of_each(make_job: Callable[..., Job]) -> dict[str, Job]:
    """One job per status (the queued one last, so no claim takes it)."""
    return {status: put_in(status, make_job) for status in reversed(ALL)}


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


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], Any]:
    """One real HTTP request; return (status, headers, decoded JSON body or text).

    ``body`` is sent as JSON unless it is ``bytes``; an HTTP error status is
    returned, not raised.
    """
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, got, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, dict(error.headers), error.read()
    try:
        return status, got, json.loads(raw)
    except ValueError:
        return status, got, raw.decode(errors="replace")
