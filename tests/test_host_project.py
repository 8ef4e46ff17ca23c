"""jobqueue in a host project with Django's defaults (tests/hostproject), in subprocesses.

The host has no LOGGING, no REST_FRAMEWORK, CONN_MAX_AGE = 0 and SQLite without
OPTIONS; this checkout is on its PYTHONPATH. On PostgreSQL runs (DATABASE_URL) the
host uses databases of its own beside the test database.
"""

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "tests" / "hostproject"

pytestmark = pytest.mark.slow


def host_url(suffix: str, tmp_path: Path) -> str:
    """A database URL for the host: beside the test database on PostgreSQL, else a file."""
    if connection.vendor == "postgresql":
        return f"{database_url()}_{suffix}"
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


def django(
    *args: str, url: str | None = None, settings: str = "hostsite.settings"
) -> subprocess.CompletedProcess:
    """Run ``python -m django ARGS`` in the host project, with a clean environment."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": settings,
    }
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=HOST,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_host_testcase_runs_its_jobs_with_the_testing_helper(tmp_path):
    """run_jobs() and runworker --once inside TestCase; send_email with the host's mail settings."""
    url = host_url("hostproject", tmp_path) if connection.vendor == "postgresql" else None
    proc = django("test", "shop.tests", "--noinput", "-v", "2", url=url)
    assert proc.returncode == 0, proc.stderr
    assert "Ran 4 tests" in proc.stderr and "\nOK" in proc.stderr


def test_the_same_tasks_import_and_run_under_djangos_immediate_and_dummy_backends():
    proc = django("test", "shop.tests_backends", settings="hostsite.settings_backends")
    assert proc.returncode == 0, proc.stderr
    assert "Ran 2 tests" in proc.stderr and "\nOK" in proc.stderr


@pytest.fixture
def host_database(tmp_path: Path) -> Iterator[str]:
    url = host_url("hostworker", tmp_path)
    if connection.vendor != "postgresql":
        yield url
        return
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


ENQUEUE = """
from jobs import lifecycle
from shop.tasks import add, explode
add.enqueue(2, 3)
explode.enqueue()
lifecycle.enqueue(
    task="send_email",
    payload={"to": "ada@example.com", "subject": "Your order", "body": "Thanks"},
)
"""

STATUSES = """
import json
from jobs.models import Job
print(json.dumps(sorted(Job.objects.values_list("task", "status"))))
"""


def test_a_host_worker_logs_and_mails_through_the_hosts_own_settings(host_database):
    """Django's default LOGGING: the worker prints its start, each job's outcome and
    errors with tracebacks; send_email uses the host's EMAIL_BACKEND (the console)."""
    assert django("migrate", "-v", "0", url=host_database).returncode == 0
    assert django("shell", "-c", ENQUEUE, url=host_database).returncode == 0
    worker = django("runworker", "--once", url=host_database)
    assert worker.returncode == 0, worker.stderr
    log = worker.stderr
    assert "INFO jobs.worker.loop worker=" in log and "started" in log
    assert log.count("transition=succeed status=done") == 2
    assert "ERROR jobs.runner job=" in log and "task=shop.tasks.explode failed" in log
    assert "Traceback (most recent call last)" in log and "RuntimeError: boom" in log
    assert "Subject: Your order" in worker.stdout  # the console mailer, in the executor
    statuses = json.loads(
        django("shell", "-c", STATUSES, url=host_database).stdout.splitlines()[-1]
    )
    assert statuses == [
        ["send_email", "done"],
        ["shop.tasks.add", "done"],
        ["shop.tasks.explode", "failed"],
    ]
    if host_database.startswith("sqlite:///"):
        assert "jobs.W001" in log  # the check tells the host what its other processes miss
        path = host_database.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:  # the worker switched the file to WAL itself
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
