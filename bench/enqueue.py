"""Enqueue rates: Python one by one, Python bulk, HTTP single and HTTP bulk (gunicorn).

    python -m bench.enqueue sqlite|postgres [--seconds 5] [--threads 4]

Each part runs for at most ``--seconds`` (and a bounded count) against a fresh
database. The HTTP parts start ``gunicorn -c python:jobqueue.gunicorn
jobqueue.wsgi:application -w 2`` (threaded workers) on a free loopback port
(DJANGO_DEBUG off, the per-user write throttle off: ``JOBS_WRITE_RATE=none``),
create a user with the ``add_job`` permission and a DRF token in the bench
database, and post from ``--threads`` client threads, each with its own
keep-alive ``http.client.HTTPConnection`` (it reconnects on its own when the
server closes the connection). Every part checks that exactly the jobs it
reported were created.
"""

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bench.common import DATABASES, ROOT, database_url, drop_database, emit, env_for, wait_for
from bench.django_env import setup

BULK = 1000


def _record(kind: str, mode: str, jobs: int, requests: int, seconds: float, **extra: Any) -> dict:
    from jobs.models import Job

    created = Job.objects.filter(queue=f"bench-{mode}").count()
    if created != jobs:
        raise SystemExit(f"enqueue {mode}: reported {jobs} jobs, found {created}")
    return emit(
        {
            "bench": "enqueue",
            "db": kind,
            "mode": mode,
            "jobs": jobs,
            "requests": requests,
            "seconds": round(seconds, 3),
            "jobs_per_s": round(jobs / seconds),
            "requests_per_s": round(requests / seconds),
            **extra,
        }
    )


def python_single(kind: str, seconds: float, limit: int = 20_000) -> dict:
    from jobs import lifecycle

    started, n = time.perf_counter(), 0
    while n < limit and time.perf_counter() - started < seconds:
        lifecycle.enqueue(task="noop", queue="bench-python-single")
        n += 1
    return _record(kind, "python-single", n, n, time.perf_counter() - started)


def python_bulk(kind: str, seconds: float, limit: int = 100_000) -> dict:
    from jobs import lifecycle

    started, n, calls = time.perf_counter(), 0, 0
    while n < limit and time.perf_counter() - started < seconds:
        lifecycle.enqueue_many([{"task": "noop", "queue": "bench-python-bulk"}] * 5000)
        n, calls = n + 5000, calls + 1
    return _record(kind, "python-bulk", n, calls, time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "-c", "python:jobqueue.gunicorn"]
    command += ["jobqueue.wsgi:application"]
    command += ["-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    env = env_for(url)
    env.pop("DJANGO_DEBUG", None)
    env["PYTHONWARNINGS"] = "ignore::UserWarning"  # no collected static files: not needed here
    env["JOBS_WRITE_RATE"] = "none"  # measure the API, not the per-user write throttle
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


def token() -> str:
    """Create a user allowed to add jobs (and nothing else); return its API token."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="jobs", codename="add_job")
    )
    return Token.objects.get_or_create(user=user)[0].key


class Client(threading.Thread):
    """Post ``body`` over one keep-alive connection until time or the shared budget runs out."""

    def __init__(
        self, port: int, key: str, body: bytes, until: float, budget: list[int], lock: Any
    ) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
        self.body, self.until, self.budget = body, until, budget
        self.lock = lock
        self.ok = self.errors = self.reconnects = 0

    def take(self) -> bool:
        with self.lock:
            if self.budget[0] <= 0 or time.perf_counter() >= self.until:
                return False
            self.budget[0] -= 1
            return True

    def run(self) -> None:
        while self.take():
            self.conn.request("POST", "/api/jobs", body=self.body, headers=self.headers)
            response = self.conn.getresponse()
            response.read()
            if response.status == 201:
                self.ok += 1
            else:
                self.errors += 1
            if response.will_close:
                self.reconnects += 1
        self.conn.close()


def http_post(kind: str, port: int, key: str, mode: str, seconds: float, threads: int) -> dict:
    spec = {"task": "noop", "queue": f"bench-{mode}"}
    per_request = BULK if mode == "http-bulk" else 1
    body = json.dumps([spec] * BULK if per_request > 1 else spec).encode()
    budget = [100_000 // per_request]
    lock = threading.Lock()
    started = time.perf_counter()
    clients = [Client(port, key, body, started + seconds, budget, lock) for _ in range(threads)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    elapsed = time.perf_counter() - started
    if errors := sum(c.errors for c in clients):
        raise SystemExit(f"{mode}: {errors} requests failed")
    requests = sum(c.ok for c in clients)
    reconnects = sum(c.reconnects for c in clients)
    return _record(
        kind,
        mode,
        requests * per_request,
        requests,
        elapsed,
        threads=threads,
        server_closed_connections=reconnects,
    )


def run(kind: str, seconds: float, threads: int) -> list[dict[str, Any]]:
    url = database_url(kind, "enqueue")
    setup(url)
    from django.db import connection

    records = [python_single(kind, seconds), python_bulk(kind, seconds)]
    key = token()
    connection.close()
    port = free_port()
    server = start_gunicorn(url, port)
    try:
        wait_for(lambda: _healthy(port), timeout=60, interval=0.1)
        for mode in ("http-single", "http-bulk"):
            records.append(http_post(kind, port, key, mode, seconds, threads))
    finally:
        server.terminate()
        server.wait(timeout=30)
    connection.close()
    drop_database(url)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    run(args.db, args.seconds, args.threads)


if __name__ == "__main__":
    main()
