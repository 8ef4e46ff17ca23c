"""Database outages: requests answer 503 (retry later), never 500; outcomes a worker
could not record while the database was down are recorded once it is back.

In-process tests point the connection at a port where nothing listens (PostgreSQL
and MariaDB runs: a real connection failure, no mock). End to end: the real server and a
worker on a private PostgreSQL cluster that is stopped and started again during a
burst of creates. Clients get 201 or 503 (the JSON error shape, ``Retry-After``),
never a 500 or a reset; every 201 has its job; no job runs twice.
"""

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.helpers import free_port, serve, service
from tests.pg_cluster import PgCluster

CLIENTS = 8


@pytest.fixture
def server(transactional_db: None) -> None:
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("a connection failure needs a database server (run with DATABASE_URL)")


@contextmanager
def database_down() -> Iterator[None]:
    """Make the next connection fail as if the server were down: nothing listens there."""
    from django.db import connection

    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port


def test_connection_failures_are_unavailable_and_query_errors_are_not(server):
    from django.db import DatabaseError, connection

    from jobs.exceptions import database_unavailable

    with pytest.raises(DatabaseError) as refused, database_down():
        connection.ensure_connection()
    assert database_unavailable(refused.value)
    with pytest.raises(DatabaseError) as bad, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert not database_unavailable(bad.value)
    kill = (
        "KILL CONNECTION CONNECTION_ID()"
        if connection.vendor == "mysql"
        else "SELECT pg_terminate_backend(pg_backend_pid())"
    )
    with pytest.raises(DatabaseError) as killed, connection.cursor() as cursor:
        cursor.execute(kill)
    assert database_unavailable(killed.value)
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_mysql_errors_are_told_apart_by_number():
    """MariaDB/MySQL: a killed connection is an outage, a deadlock a conflict to run again,
    a bad query neither."""
    from django.db import DatabaseError, OperationalError, connection

    from jobs.exceptions import database_unavailable, lock_conflict

    if connection.vendor != "mysql":
        pytest.skip("MariaDB/MySQL error numbers")
    import MySQLdb

    with pytest.raises(DatabaseError) as bad, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert not database_unavailable(bad.value) and not lock_conflict(bad.value)
    with pytest.raises(DatabaseError) as killed, connection.cursor() as cursor:
        cursor.execute("KILL CONNECTION CONNECTION_ID()")
    assert database_unavailable(killed.value) and not lock_conflict(killed.value)
    connection.close()
    for number in (1213, 1205):  # deadlock, lock wait timeout: as Django wraps them
        try:
            try:
                raise MySQLdb.OperationalError(number, "conflict")
            except MySQLdb.OperationalError as driver:
                raise OperationalError(*driver.args) from driver
        except OperationalError as wrapped:
            assert lock_conflict(wrapped) and not database_unavailable(wrapped)


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "2"
    body = json.loads(response.content)
    assert body["code"] == "database_unavailable" and "retry" in body["detail"].lower()


def test_api_calls_answer_503_with_retry_after_while_the_database_is_down(server, api, caplog):
    """Token lookup, permission checks and views alike: a 503 in the error shape, logged
    as one WARNING line each without a traceback; 200s again once it is back."""
    job = api.post("/api/jobs", {"payload": 1}, format="json").json()
    caplog.set_level(logging.INFO)
    with database_down():
        answers = [
            api.get("/api/jobs"),
            api.post("/api/jobs", {"payload": 2}, format="json"),
            api.get(f"/api/jobs/{job['id']}"),
            api.post(f"/api/jobs/{job['id']}/cancel"),
        ]
    for response in answers:
        assert_unavailable(response)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.exc_info) for r in problems] == [
        ("django.request", "WARNING", None)
    ] * len(answers)
    assert "Database unavailable: GET /api/jobs:" in problems[0].getMessage()
    assert api.get(f"/api/jobs/{job['id']}").status_code == 200


def test_health_answers_503_with_one_warning_line(server, client, caplog):
    with database_down():
        response = client.get("/health")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info) for r in problems] == [("WARNING", None)]


def test_the_admin_shows_a_readable_page_while_the_database_is_down(server, client, user):
    client.force_login(user)
    with database_down():
        response = client.get("/admin/jobs/job/")
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert "Database unavailable" in response.content.decode()
    assert client.get("/admin/jobs/job/").status_code == 200


def test_metrics_and_json_clients_get_the_json_503(server, client, user):
    client.force_login(user)
    with database_down():
        metrics = client.get("/metrics")
        page = client.get("/admin/jobs/job/", HTTP_ACCEPT="application/json")
    for response in (metrics, page):
        assert response.status_code == 503 and response["Retry-After"] == "2"
        assert response.json()["code"] == "database_unavailable"


def test_the_500_handler_answers_503_for_an_unreachable_database_only(server, rf):
    """For errors raised outside a view (a middleware's query): 503 for an outage, the
    usual 500 page for anything else."""
    from django.db import DatabaseError, connection

    from jobs.unavailable import server_error

    try:
        with database_down():
            connection.ensure_connection()
    except DatabaseError:
        assert server_error(rf.get("/admin/")).status_code == 503
        assert_unavailable(server_error(rf.get("/api/jobs")))
    try:
        raise ValueError("a bug")
    except ValueError:
        assert server_error(rf.get("/admin/")).status_code == 500


def test_outcomes_an_outage_kept_are_recorded_once_the_database_answers(server, make_job):
    """Successes, failures and progress the worker's executor could not write while the
    database was down wait in ``Completions`` and are written (fenced) once it is back:
    nothing runs again, and a job taken away meanwhile is not overwritten."""
    from django.db import DatabaseError

    from jobs import lifecycle, runner
    from jobs.models import Job

    ok = make_job(task="echo", payload="ok")
    failing = make_job(task="test.fail", payload="no")
    reporting = make_job(task="test.progress")
    cancelled = make_job(task="echo", payload="taken away")
    claimed = lifecycle.claim(worker_id="w", limit=4)
    completions = runner.Completions("w")
    with database_down():
        statuses = [runner.execute(job, worker_id="w", completions=completions) for job in claimed]
        assert statuses == ["processing"] * 4
        with pytest.raises(DatabaseError):
            completions.flush()
        assert completions.waiting() and completions.retry_in() is not None
    lifecycle.cancel(job_id=cancelled.pk)
    assert sorted(completions.flush(), key=str) == sorted([j.pk for j in claimed], key=str)
    assert not completions.waiting() and completions.retry_in() is None
    rows = Job.objects.in_bulk([j.pk for j in claimed])
    assert (rows[ok.pk].status, rows[ok.pk].result) == ("done", "ok")
    assert rows[failing.pk].status == "queued" and "failed on 'no'" in rows[failing.pk].error
    assert rows[reporting.pk].status == "done"
    assert (rows[reporting.pk].progress, rows[reporting.pk].progress_message) == (50, "half way")
    assert rows[cancelled.pk].status == "cancelled"


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster(free_port())
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


def post(base: str, token: str, body: Any) -> tuple[int | str, dict[str, str], Any]:
    """POST a job; return (status, headers, JSON body), or ("error: ...", {}, None)."""
    request = urllib.request.Request(
        f"{base}/api/jobs",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return error.code, dict(error.headers), parsed
    except OSError as exc:
        return f"error: {exc!r}", {}, None


class Burst:
    """``CLIENTS`` threads creating quick jobs until stopped; every answer kept."""

    def __init__(self, base: str, token: str, log: Path) -> None:
        self.base, self.token, self.log = base, token, log
        self.answers: list[tuple[str, int | str, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self.done.is_set():
            line = uuid.uuid4().hex
            payload = {"path": str(self.log), "line": line}
            answer = post(self.base, self.token, {"task": "test.record", "payload": payload})
            with self.lock:
                self.answers.append((line, *answer))
            time.sleep(0.02)

    def __enter__(self) -> "Burst":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=60)


def executions(log: Path) -> list[tuple[str, float]]:
    """(line, when) for each execution of a ``test.record`` job."""
    if not log.exists():
        return []
    return [
        (line, float(when)) for line, when in (r.split() for r in log.read_text().split("\n") if r)
    ]


@pytest.mark.slow
def test_a_database_restart_during_a_burst_costs_503s_and_a_delay_never_a_500_or_a_rerun(
    cluster, tmp_path
):
    import psycopg

    url = cluster.create_database("jobqueue_outage")
    env, token = service(url, JOBS_LEASE_SECONDS="10", JOBS_BATCH_SIZE="4")
    log, marker = tmp_path / "executions.log", tmp_path / "slow-started"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve(env, port, tmp_path / "serve.log", "--web-workers", "2")
    try:
        wait_for(lambda: post(base, token, {"task": "noop"})[0] == 201, timeout=60)
        with Burst(base, token, log) as burst:
            wait_for(lambda: len(burst.answers) >= CLIENTS)  # the burst is under way
            # Jobs that finish while the database is down: the first one runs when it stops.
            slow = [
                post(
                    base,
                    token,
                    {
                        "task": "test.record",
                        "priority": 100,
                        "payload": {
                            "path": str(log),
                            "line": f"slow-{n}",
                            "seconds": 1.5,
                            "marker": str(marker),
                        },
                    },
                )
                for n in range(3)
            ]
            assert [answer[0] for answer in slow] == [201] * 3
            wait_for(marker.exists, timeout=30)
            cluster.stop("fast")
            down_at = time.time()  # stopped: nothing written from here...
            time.sleep(3)
            up_at = time.time()  # ...to here
            cluster.start()
            # The burst goes on until its jobs are created again.
            created_before = sum(answer[1] == 201 for answer in burst.answers)
            wait_for(
                lambda: sum(a[1] == 201 for a in burst.answers) >= created_before + CLIENTS,
                timeout=60,
            )
        with psycopg.connect(url) as conn:

            def settled() -> bool:
                unfinished = conn.execute(
                    "SELECT count(*) FROM jobs_job WHERE status IN ('queued', 'processing')"
                ).fetchone()
                return unfinished[0] == 0

            wait_for(settled, timeout=120, interval=0.5)
            rows = {
                str(pk): (status, finished_at.timestamp() if finished_at else None)
                for pk, status, finished_at in conn.execute(
                    "SELECT id, status, finished_at FROM jobs_job"
                )
            }
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-5000:]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    output = (tmp_path / "serve.log").read_text()

    statuses = Counter(answer[1] for answer in burst.answers)
    assert set(statuses) <= {201, 503}, (statuses, output[-5000:])
    assert statuses[503] > 0 and statuses[201] > 0, statuses  # the outage was seen, and passed
    for _, status, headers, body in burst.answers:
        if status == 503:
            assert int(headers["Retry-After"]) > 0
            assert body["code"] == "database_unavailable" and body["detail"], body
    assert "Internal Server Error" not in output and "Traceback" not in output, output[-5000:]

    ran = executions(log)
    counts = Counter(line for line, _ in ran)
    assert [line for line, n in counts.items() if n > 1] == []  # no job ran twice
    created = {line: body["id"] for line, status, _, body in burst.answers if status == 201}
    created |= {f"slow-{n}": answer[2]["id"] for n, answer in enumerate(slow)}
    for line, pk in created.items():
        assert rows[pk][0] == "done", (line, rows[pk])
        assert counts[line] == 1, line

    during = [line for line, when in ran if down_at < when < up_at]
    assert during, (down_at, up_at, [r for r in ran if r[0].startswith("slow")])
    for line in during:  # ran while the database was down, recorded once it was back
        status, finished = rows[created[line]]
        assert status == "done" and finished >= up_at, (line, status, finished, up_at)
    assert "recovered=" not in output, output[-5000:]
