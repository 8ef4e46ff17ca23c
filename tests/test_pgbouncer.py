"""Workers and the API through PgBouncer in transaction pooling mode.

A private PostgreSQL cluster logs every statement with its user; a private PgBouncer
(``pool_mode = transaction``) connects to it as the user ``pooled``, so the log tells
what came through the pooler. ``manage.py serve`` runs the web server and four
workers on the pooler, the workers' LISTEN goes straight to the server
(``JOBS_LISTEN_DATABASE_URL``). They drain 2,000 jobs exactly once, a new job wakes an
idle worker (the poll interval is set far above the pickups measured), and nothing
that crossed the pooler relies on a session: no server-side cursor, no named
prepared statement, no session advisory lock, no LISTEN.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.helpers import free_port, http, serve, service
from tests.pg_cluster import PgCluster
from tests.test_outage import executions

PGBOUNCER = Path("/usr/sbin/pgbouncer")
POLL_INTERVAL = 5.0  # a pickup faster than this was woken, not polled

# What may not cross a transaction pooler: each holds state in the server session,
# which the next transaction of the same client may not see.
SESSION_STATE = re.compile(
    r"(?:statement|execute <unnamed>): (?:DECLARE|LISTEN|PREPARE|SET (?!LOCAL))"
    r"|pg_(?:try_)?advisory_lock(?:_shared)?\("
    r"|set_config\([^)]*,\s*false\)"
    r"|execute (?!<unnamed>)",
    re.IGNORECASE,
)


def pooled_statements(log: str) -> list[str]:
    """The statements the server logged for connections that came through the pooler."""
    return [line for line in log.splitlines() if line.startswith("pooled:")]


def session_state(log: str) -> list[str]:
    return [line for line in pooled_statements(log) if SESSION_STATE.search(line)]


@pytest.fixture
def pooler(transactional_db: None, tmp_path: Path) -> Iterator[tuple[PgCluster, str, str]]:
    """(cluster, URL through PgBouncer, direct URL) of a database ``jobqueue_pooled``."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("runs once, in the PostgreSQL run")
    if not PGBOUNCER.exists():
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(
                f"{PGBOUNCER} is missing (apt-get install pgbouncer) and REQUIRE_POSTGRES=1"
            )
        pytest.skip(f"{PGBOUNCER} is missing (apt-get install pgbouncer)")
    pg_port, pooler_port = free_port(), free_port()
    pg = PgCluster(pg_port)
    bouncer = None
    log = open(tmp_path / "pgbouncer.log", "w")
    try:
        # UTC, as a production server should be: on another zone Django sets the session's
        # (set_config('TimeZone', ..., false)), which the scan below would rightly refuse.
        pg.start(log_statement="all", log_line_prefix="%u:", timezone="UTC")
        direct = pg.create_database("jobqueue_pooled")
        import psycopg

        with psycopg.connect(direct, autocommit=True) as conn:
            conn.execute("CREATE ROLE pooled LOGIN SUPERUSER")
        ini, users = pg.dir / "pgbouncer.ini", pg.dir / "users.txt"
        users.write_text('"pooled" ""\n')
        ini.write_text(
            "[databases]\n"
            f"jobqueue_pooled = host=127.0.0.1 port={pg_port} dbname=jobqueue_pooled user=pooled\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {pooler_port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(ini, "postgres")
            shutil.chown(users, "postgres")
        bouncer = subprocess.Popen(
            [*pg._as, str(PGBOUNCER), str(ini)], stdout=log, stderr=subprocess.STDOUT
        )
        through = f"postgres://pooled@127.0.0.1:{pooler_port}/jobqueue_pooled"
        wait_for(lambda: _answers(through), timeout=20)
        yield pg, through, direct
    finally:
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(timeout=20)
        log.close()
        pg.destroy()


def _answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def record_jobs(log: Path, lines: list[str]) -> list[dict[str, Any]]:
    return [{"task": "test.record", "payload": {"path": str(log), "line": n}} for n in lines]


@pytest.mark.slow
def test_workers_and_the_api_through_pgbouncer_in_transaction_mode(pooler, tmp_path):
    pg, through, direct = pooler
    # Migrations and the first user go straight to the server; the service through the pooler.
    env, token = service(direct)
    env |= {
        "DATABASE_URL": through,
        "JOBS_LISTEN_DATABASE_URL": direct,
        "JOBS_POLL_INTERVAL": str(POLL_INTERVAL),
    }
    log = tmp_path / "executions.log"
    port = free_port()
    server = serve(env, port, tmp_path / "serve.log", "--web-workers", "2", "--workers", "4")
    try:
        wait_for(lambda: b"Listening at" in (tmp_path / "serve.log").read_bytes(), timeout=60)
        wait_for(lambda: "listening channel" in (tmp_path / "serve.log").read_text(), timeout=60)
        # 2,000 jobs in two bulk requests; four workers drain them exactly once.
        lines = [f"job-{n}" for n in range(2000)]
        for chunk in (lines[:1000], lines[1000:]):
            status, _, created = http(
                "POST", port, "/api/jobs", token=token, body=record_jobs(log, chunk)
            )
            assert status == 201 and len(created) == 1000
        wait_for(lambda: len(executions(log)) >= 2000, timeout=180)
        # Every job done (none queued or processing): nothing can run again after this.
        stats = lambda: http("GET", port, "/api/stats", token=token)[2]  # noqa: E731
        wait_for(lambda: stats()["statuses"]["done"]["count"] == 2000)
        counts = Counter(line for line, _ in executions(log))
        assert set(counts) == set(lines) and set(counts.values()) == {1}

        # An idle worker is woken by the NOTIFY of a create, not found by a poll.
        pickups = []
        for n in range(3):
            time.sleep(1)  # let the workers go idle, into their (5 s) wait
            sent = time.time()
            http("POST", port, "/api/jobs", token=token, body=record_jobs(log, [f"wake-{n}"])[0])
            wait_for(lambda n=n: f"wake-{n}" in dict(executions(log)), timeout=30)
            pickups.append(dict(executions(log))[f"wake-{n}"] - sent)
        assert max(pickups) < POLL_INTERVAL / 2, pickups
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(timeout=60)
    output = (tmp_path / "serve.log").read_text()
    assert code == 0 and "Stopped (exit codes [0, 0, 0, 0, 0])." in output, output

    server_log = pg.log.read_text()
    assert len(pooled_statements(server_log)) > 500  # the scan saw the traffic
    assert session_state(server_log) == []
    # The listeners' LISTEN went straight to the server.
    assert re.search(r"^postgres:LOG: .*LISTEN jobqueue", server_log, re.M), "no direct LISTEN"

    # The scan is not blind: what breaks under a pooler shows up in it.
    import psycopg

    with psycopg.connect(through) as conn:
        with conn.cursor(name="server_side") as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        conn.execute("SELECT pg_advisory_lock(1)")
        conn.execute("SET statement_timeout = 1000")
        conn.execute("SELECT set_config('TimeZone', 'Europe/Paris', false)")
    found = " ".join(session_state(pg.log.read_text()))
    for mark in ("DECLARE", "pg_advisory_lock", "SET statement_timeout", "set_config"):
        assert mark in found, (mark, found)
