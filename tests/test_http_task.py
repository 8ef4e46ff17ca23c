"""The ``http_request`` task against a real HTTP server on 127.0.0.1."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobs import lifecycle, runner
from jobs.exceptions import PermanentFailure
from jobs.models import Job, Status
from jobs.tasks.builtin.http_request import RetryableHTTPError, http_request
from tests.helpers import free_port

pytestmark = pytest.mark.django_db


class Handler(BaseHTTPRequestHandler):
    """Routes: /echo, /status/<n>, /flaky (503 once, then 200), /big, /redirect?to=<url>,
    /hops/<n> (a 302 to /hops/<n-1>, and /hops/0 a 302 to /echo: n + 1 redirects)."""

    hits: dict[str, int]

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        self.server.hits[path] = self.server.hits.get(path, 0) + 1  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode() if length else ""
        if path == "/echo":
            echo = {"method": self.command, "body": received, "headers": dict(self.headers)}
            self._reply(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})
        elif path.startswith("/status/"):
            self._reply(int(path.rsplit("/", 1)[1]), b"status page")
        elif path == "/flaky":
            first = self.server.hits[path] == 1  # type: ignore[attr-defined]
            self._reply(503 if first else 200, b"down" if first else b"up")
        elif path == "/big":
            self._reply(200, b"x" * 5000)
        elif path == "/redirect":
            self._reply(302, b"", {"Location": query.removeprefix("to=")})
        elif path.startswith("/hops/"):
            left = int(path.rsplit("/", 1)[1])
            self._reply(302, b"", {"Location": f"/hops/{left - 1}" if left else "/echo"})
        else:
            self._reply(404, b"no such page")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.hits = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def base(server: ThreadingHTTPServer, settings: Any) -> str:
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    return f"http://127.0.0.1:{server.server_address[1]}"


def run(job: Job) -> Job:
    [claimed] = lifecycle.claim(worker_id="w")
    assert claimed.pk == job.pk
    runner.execute(claimed, worker_id="w")
    return Job.objects.get(pk=job.pk)


def test_post_json_returns_status_headers_and_body(base):
    result = http_request(
        {"method": "POST", "url": f"{base}/echo", "json": {"a": 1}, "headers": {"X-Key": "k"}}
    )
    assert result["status"] == 200 and result["truncated"] is False
    assert result["headers"]["content-type"] == "application/json"
    echoed = json.loads(result["body"])
    assert echoed["method"] == "POST" and json.loads(echoed["body"]) == {"a": 1}
    assert echoed["headers"]["X-Key"] == "k"
    assert echoed["headers"]["Content-Type"] == "application/json"


def test_a_5xx_is_retried_then_succeeds(base, make_job):
    job = make_job(task="http_request", payload={"url": f"{base}/flaky"}, max_attempts=3)
    job = run(job)
    assert job.status == Status.QUEUED and "RetryableHTTPError: HTTP 503" in job.error
    Job.objects.filter(pk=job.pk).update(run_after=None)
    job = run(job)
    assert job.status == Status.DONE and job.result["body"] == "up" and job.attempts == 2


def test_a_4xx_fails_at_once(base, make_job):
    job = run(make_job(task="http_request", payload={"url": f"{base}/status/404"}))
    assert job.status == Status.FAILED and job.attempts == 1
    assert "PermanentFailure: HTTP 404" in job.error


@pytest.mark.parametrize("status", [429, 500])
def test_retryable_statuses_raise_a_retryable_error(base, status):
    with pytest.raises(RetryableHTTPError):
        http_request({"url": f"{base}/status/{status}"})


def test_expected_status_decides_success(base):
    assert http_request({"url": f"{base}/status/404", "expected_status": 404})["status"] == 404
    with pytest.raises(PermanentFailure):
        http_request({"url": f"{base}/echo", "expected_status": [201]})


def test_network_errors_are_retryable(settings, make_job):
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    closed = free_port()  # bound and closed here: the connection is refused
    job = run(make_job(task="http_request", payload={"url": f"http://127.0.0.1:{closed}/"}))
    assert (job.status, job.attempts) == (Status.QUEUED, 1)
    assert "ConnectionRefusedError" in job.error


def test_refused_host_fails_at_run_time_without_a_request(server, settings, make_job):
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    url = f"http://127.0.0.1:{server.server_address[1]}/echo"
    job = make_job(task="http_request", payload={"url": url})
    settings.JOBS_HTTP_ALLOWED_HOSTS = []  # the worker's settings deny it
    job = run(job)
    assert job.status == Status.FAILED and "not in JOBS_HTTP_ALLOWED_HOSTS" in job.error
    assert server.hits == {}


def test_redirects_stay_on_the_same_host(base, server):
    same = http_request({"url": f"{base}/redirect?to=/echo"})
    assert same["status"] == 200 and same["url"] == f"{base}/echo"
    other = f"http://localhost:{server.server_address[1]}/echo"
    with pytest.raises(PermanentFailure, match="another host"):
        http_request({"url": f"{base}/redirect?to={other}"})
    assert "/echo" in server.hits and server.hits["/echo"] == 1


def test_at_most_5_redirects_are_followed_and_a_6th_fails_the_job_at_once(base, server, make_job):
    """README: redirects are followed to the same host, at most 5; an unfollowed redirect
    fails at once (no retry)."""
    five = run(make_job(task="http_request", payload={"url": f"{base}/hops/4"}))
    assert (five.status, five.result["status"], five.result["url"]) == ("done", 200, f"{base}/echo")
    assert [server.hits[f"/hops/{n}"] for n in range(5)] == [1] * 5
    six = run(make_job(task="http_request", payload={"url": f"{base}/hops/5"}, max_attempts=5))
    assert (six.status, six.attempts) == (Status.FAILED, 1)
    assert six.error == "jobs.exceptions.PermanentFailure: more than 5 redirects"
    assert server.hits["/hops/5"] == 1 and server.hits["/echo"] == 1  # the 6th never followed


def test_the_response_is_capped(base, settings):
    settings.JOBS_HTTP_MAX_RESPONSE_BYTES = 1000
    result = http_request({"url": f"{base}/big"})
    assert result["truncated"] is True and len(result["body"]) == 1000


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"url": "http://example.com/"}, "not in JOBS_HTTP_ALLOWED_HOSTS"),
        ({"url": "file:///etc/passwd"}, "http://"),
        ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "either json or body"),
        ({"url": "http://127.0.0.1/", "method": "BREW"}, "valid choice"),
        ({"url": "http://127.0.0.1/", "headers": {"X": "a\r\nHost: evil"}}, "not a valid header"),
    ],
)
def test_bad_payloads_are_a_400_before_queueing(api, settings, payload, message):
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    response = api.post("/api/jobs", {"task": "http_request", "payload": payload}, format="json")
    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json())
    assert not Job.objects.exists()


def test_allow_all_hosts_is_opt_in(settings):
    from jobs.tasks.builtin.http_request import check_url

    settings.JOBS_HTTP_ALLOWED_HOSTS = []
    with pytest.raises(ValueError, match="not in"):
        check_url("http://example.com/")
    settings.JOBS_HTTP_ALLOWED_HOSTS = [".example.com"]
    assert check_url("https://api.example.com/x") == "api.example.com"
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["*"]
    assert check_url("http://anything.test/") == "anything.test"
