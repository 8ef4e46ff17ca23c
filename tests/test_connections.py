"""Worker connections under a host's settings: kept across jobs, SQLite options applied."""

from collections import Counter

import pytest
from django.core import checks
from django.db import connection

from jobs.models import Job, Status
from jobs.worker.connections import (
    SQLITE_OPTIONS,
    _worker_sqlite_options,
    check_sqlite_settings,
    sqlite_warnings,
)


@pytest.mark.slow
@pytest.mark.parametrize("max_age", ["0", "600"])
def test_a_worker_opens_one_connection_per_process_whatever_conn_max_age(
    processes, make_job, tmp_path, max_age
):
    """With Django's default CONN_MAX_AGE = 0 a worker used to reconnect in every pass,
    and its executor for every job handed over: two new connections a job."""
    log = tmp_path / "connections"
    for i in range(20):
        make_job(task="echo", payload=i)
    worker = processes.worker(
        "--once", env={"DJANGO_CONN_MAX_AGE": max_age, "TEST_CONNECTION_LOG": str(log)}
    )
    assert worker.wait(timeout=60) == 0, processes.output(worker)
    assert Job.objects.filter(status=Status.DONE).count() == 20
    per_process = Counter(log.read_text().split())
    assert len(per_process) == 2, per_process  # the worker and its executor
    # Django's MySQL backend reads the server's version once per process over a temporary
    # connection of its own when a query is compiled before the first connect (to know
    # MariaDB's native UUID type): one more, once, never one per job.
    once = 2 if connection.vendor == "mysql" else 1
    assert set(per_process.values()) == {once}, per_process


def sqlite(**options):
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3", "OPTIONS": options}


def test_the_check_names_the_sqlite_options_a_host_is_missing():
    [warning] = sqlite_warnings(sqlite())
    assert warning.id == "jobs.W001"
    assert "transaction_mode IMMEDIATE, a busy timeout, WAL journal mode" in warning.msg
    assert repr(SQLITE_OPTIONS) in warning.hint
    [warning] = sqlite_warnings(sqlite(transaction_mode="IMMEDIATE", timeout=5))
    assert "(WAL journal mode)" in warning.msg


@pytest.mark.parametrize(
    "database",
    [
        sqlite(**SQLITE_OPTIONS),
        sqlite(transaction_mode="immediate", timeout=5, init_command="PRAGMA journal_mode = wal"),
        {"ENGINE": "django.db.backends.postgresql", "NAME": "jobs"},
    ],
)
def test_the_check_is_quiet_when_the_settings_are_there(database):
    assert sqlite_warnings(database) == []


def test_the_check_is_registered_and_this_repositorys_settings_pass_it():
    assert check_sqlite_settings in checks.registry.registry.get_checks()
    assert check_sqlite_settings() == []


def test_a_worker_adds_what_sqlite_needs_and_keeps_what_the_project_chose():
    assert _worker_sqlite_options({}) == {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    chosen = {
        "transaction_mode": "EXCLUSIVE",
        "timeout": 3,
        "init_command": "PRAGMA synchronous=FULL;",
    }
    assert _worker_sqlite_options(chosen) == {
        **chosen,
        "init_command": "PRAGMA synchronous=FULL; PRAGMA journal_mode=WAL",
    }
    assert _worker_sqlite_options(SQLITE_OPTIONS) == SQLITE_OPTIONS
