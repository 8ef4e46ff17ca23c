"""Request bodies as a real server hands them over: chunked bodies are read, never dropped.

Django's test client cannot send ``Transfer-Encoding: chunked``, so these tests talk
HTTP to gunicorn started as ``make run`` starts it (``manage.py serve``), or call
the WSGI application with the environ a server builds.
"""

import base64
import io
import json
import wsgiref.util
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from jobqueue.wsgi import application
from jobs import lifecycle
from jobs.models import Job, Status
from tests.helpers import free_port, http, wait_until_serving


@pytest.fixture
def server(processes: Any) -> Iterator[tuple[int, str]]:
    """``manage.py serve`` (gunicorn, no job workers) with a 1000-byte body cap; its port and
    a superuser's token."""
    user = get_user_model().objects.create_superuser("chunky", password="pw-for-tests-only")
    token = Token.objects.create(user=user).key
    port = free_port()
    env = {
        "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": "1000",
        "JOBS_WRITE_RATE": "none",
        "JOBS_API_BASIC_AUTH": "1",
    }
    serve = processes.manage(
        "serve", "--port", str(port), "--web-workers", "1", "--workers", "0", env=env
    )

    wait_until_serving(processes, serve, port)
    yield port, token


@pytest.mark.slow
def test_gunicorn_reads_chunked_bodies(server):
    """A chunked create makes the job it describes; a chunked retry touches only its ids;
    a chunked body over the cap is a 413 that creates nothing."""
    port, token = server
    document = {"task": "echo", "payload": {"n": 42}, "queue": "chunky", "priority": 7}
    status, _, created = http("POST", port, "/api/jobs", token=token, body=document, chunk_size=7)
    assert status == 201, created
    job = Job.objects.get(pk=created["id"])
    assert (job.task, job.payload, job.queue, job.priority) == ("echo", {"n": 42}, "chunky", 7)

    first, second = (lifecycle.enqueue(task="echo")[0] for _ in range(2))
    for failed in (first, second):
        lifecycle.cancel(job_id=failed.pk)
    ids = {"ids": [str(first.pk)]}
    status, _, retried = http("POST", port, "/api/jobs/retry", token=token, body=ids, chunk_size=7)
    assert (status, retried) == (200, {"changed": 1, "skipped": {}, "batches": 1})
    assert Job.objects.get(pk=first.pk).status == Status.QUEUED
    assert Job.objects.get(pk=second.pk).status == Status.CANCELLED

    jobs_before = Job.objects.count()
    big = {"payload": "x" * 2000}
    status, _, too_big = http("POST", port, "/api/jobs", token=token, body=big, chunk_size=100)
    assert (status, too_big["code"]) == (413, "too_large"), too_big
    assert Job.objects.count() == jobs_before


@pytest.mark.slow
def test_basic_auth_over_plain_http_is_refused_whatever_x_forwarded_proto_says(server):
    """The server trusts no client's X-Forwarded-Proto, loopback included: without
    DJANGO_SECURE_PROXY_SSL_HEADER a plain HTTP request is plain HTTP, and Basic is a 401."""
    port, _ = server
    basic = "Basic " + base64.b64encode(b"chunky:pw-for-tests-only").decode()
    for extra in ({}, {"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}):
        status, _, body = http("GET", port, "/api/stats", headers={"Authorization": basic, **extra})
        assert status == 401, (extra, body)
        assert "HTTPS" in body["detail"], body


def chunked_environ(body: bytes, **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/jobs",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }
    wsgiref.util.setup_testing_defaults(environ)
    return environ


def call(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Call a WSGI application as a server would; keep the test's database connection open
    (as Django's test client does), so the test sees what the request wrote."""
    status: list[str] = []
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)
    return int(status[0].split()[0]), json.loads(body)


@pytest.fixture
def authorization(user: Any) -> str:
    return f"Token {Token.objects.create(user=user).key}"


def test_a_chunked_body_whose_end_is_unknown_is_411(authorization):
    """A server that de-chunks without marking the end of the input: refused, not read."""
    environ = chunked_environ(b'{"task": "echo"}', HTTP_AUTHORIZATION=authorization)
    status, body = call(application, environ)
    assert (status, body["code"]) == (411, "length_required")
    assert not Job.objects.exists()


def test_django_refuses_a_chunked_body_that_reached_it_without_a_length(authorization, make_job):
    """Behind any other front (ASGI, another WSGI wrapper) Django would read such a body as
    empty: it is a 411 instead."""
    failed = make_job()
    lifecycle.cancel(job_id=failed.pk)
    body = b'{"ids": ["00000000-0000-0000-0000-000000000000"]}'
    environ = chunked_environ(body, HTTP_AUTHORIZATION=authorization, PATH_INFO="/api/jobs/retry")
    status, answer = call(WSGIHandler(), environ)
    assert (status, answer["code"]) == (411, "length_required")
    assert Job.objects.get(pk=failed.pk).status == Status.CANCELLED
