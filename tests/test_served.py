"""The API through the real server, started as ``make run`` starts it (``manage.py serve``:
gunicorn with its threaded workers, and one ``runworker``), over real HTTP.

One server for the whole module, on a free port and a fresh SQLite file of its own
(migrated and bootstrapped as ``make run`` does); the tests talk to it only over HTTP.
"""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for
from tests.helpers import free_port, http, manage

pytestmark = pytest.mark.slow

LATER = "2100-01-01T00:00:00Z"  # run_after far ahead: the server's worker leaves the job alone


@dataclass
class Served:
    port: int
    token: str
    log: Path

    def call(self, method: str, path: str, **options: Any) -> tuple[int, dict[str, str], Any]:
        options.setdefault("token", self.token)
        return http(method, self.port, path, **options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """migrate, bootstrap, then ``serve`` until the module is done; it must stop cleanly."""
    home = tmp_path_factory.mktemp("served")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{home / 'served.sqlite3'}",
        "JOBS_TASK_MODULES": "tests.tasks",
        "PYTHONUNBUFFERED": "1",
    }

    manage("migrate", "--noinput", env=env)
    token = manage("bootstrap", env=env).split("API token:")[1].split()[0]
    port, log = free_port(), home / "serve.log"
    with open(log, "w") as handle:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Served(port=port, token=token, log=log)

    def healthy() -> bool:
        assert serve.poll() is None, log.read_text()
        try:
            return http("GET", port, "/health")[0] == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60)
        yield server
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()
        assert "Stopped (exit codes [0, 0])." in log.read_text()
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_without_a_token_the_api_answers_401(served):
    status, headers, body = served.call("GET", "/api/jobs", token=None)
    assert status == 401
    assert body == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert headers["WWW-Authenticate"].startswith("Token")


def test_create_list_get_patch_run_and_delete(served):
    spec = {"task": "echo", "payload": {"n": 1}, "queue": "served-flow", "run_after": LATER}
    status, headers, job = served.call("POST", "/api/jobs", body=spec)
    assert status == 201, job
    assert headers["Content-Type"] == "application/json"
    assert (job["status"], job["payload"], job["queue"]) == ("queued", {"n": 1}, "served-flow")

    chunked_spec = {**spec, "payload": {"n": 2, "text": "x" * 300}}
    status, _, chunked = served.call("POST", "/api/jobs", body=chunked_spec, chunk_size=16)
    assert status == 201, chunked
    assert chunked["payload"] == {"n": 2, "text": "x" * 300}

    status, _, listed = served.call("GET", "/api/jobs?queue=served-flow")
    assert status == 200
    assert [j["id"] for j in listed] == [chunked["id"], job["id"]]  # newest first

    status, _, one = served.call("GET", f"/api/jobs/{job['id']}")
    assert (status, one["id"], one["history"]) == (200, job["id"], [])

    path = f"/api/jobs/{job['id']}"
    status, _, held = served.call("PATCH", f"{path}/status", body={"status": "processing"})
    assert (status, held["status"], held["worker_id"]) == (200, "processing", "manual"), held

    status, _, ran = served.call("POST", f"{path}/run")
    assert status == 200, ran
    assert (ran["status"], ran["result"], ran["attempts"]) == ("done", {"n": 1}, 1)

    status, _, deleted = served.call("DELETE", path)
    assert (status, deleted["id"], deleted["status"]) == (200, job["id"], "done")
    status, _, gone = served.call("GET", path)
    assert (status, gone["code"]) == (404, "not_found")


def test_a_body_that_is_not_json_is_a_400_saying_so(served):
    status, _, body = served.call("POST", "/api/jobs", body=b'{"task": "echo", ')
    assert status == 400
    assert body["code"] == "parse_error"
    assert body["detail"].startswith("JSON parse error")


def test_20_concurrent_creates_each_land_exactly_once(served):
    """Twenty threads create at the same moment: twenty jobs, each once, and the server's
    worker runs each once."""
    start = threading.Barrier(20)

    def create(n: int) -> tuple[int, Any]:
        start.wait(timeout=30)
        status, _, body = served.call(
            "POST", "/api/jobs", body={"task": "echo", "payload": n, "queue": "served-burst"}
        )
        return status, body

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(create, range(20)))
    assert [status for status, _ in answers] == [201] * 20, answers
    created = {body["id"]: body["payload"] for _, body in answers}
    assert sorted(created.values()) == list(range(20))

    def all_done() -> list[dict[str, Any]] | None:
        status, _, jobs = served.call("GET", "/api/jobs?queue=served-burst&page_size=100")
        assert status == 200
        return jobs if all(j["status"] == "done" for j in jobs) else None

    jobs = wait_for(all_done)
    assert {j["id"]: j["payload"] for j in jobs} == created
    assert {(j["result"] == j["payload"], j["attempts"]) for j in jobs} == {(True, 1)}
