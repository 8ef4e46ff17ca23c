"""Waking workers (PostgreSQL): a new job is announced exactly when it commits, once
per queue, and never for a rolled-back one."""

from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from jobs import lifecycle
from jobs.models import Job
from jobs.notify import CHANNEL, Listener
from tests.conftest import database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener() -> Any:
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is a PostgreSQL feature")
    listening = Listener()
    assert listening.fileno() is not None
    yield listening
    listening.close()


@pytest.fixture
def other() -> Any:
    """A second connection: what another process (a worker) sees."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        yield conn


def heard(listener: Listener, expected: set[str]) -> list[str]:
    """The queues announced until all of ``expected`` were (fails after a deadline)."""
    got: list[str] = []
    wait_for(lambda: got.extend(listener.drain()) or expected <= set(got), timeout=10)
    return got


def heard_before_marker(listener: Listener, other: Any) -> list[str]:
    """The queues announced so far: a marker is sent and committed now from ``other``;
    notifications arrive in commit order, so whatever was committed before it has
    arrived by the time it does."""
    other.execute("SELECT pg_notify(%s, 'marker')", [CHANNEL])
    return [queue for queue in heard(listener, {"marker"}) if queue != "marker"]


def test_an_enqueue_is_announced_once(listener, other):
    lifecycle.enqueue(task="echo", queue="q1")
    assert heard_before_marker(listener, other) == ["q1"]


def test_a_bulk_enqueue_announces_each_of_its_queues_once(listener, other):
    lifecycle.enqueue_many([{"task": "echo", "queue": q} for q in ["b", "a", "b", "a", "c"]])
    assert sorted(heard_before_marker(listener, other)) == ["a", "b", "c"]


@pytest.mark.parametrize("many", [False, True])
def test_a_job_enqueued_in_a_transaction_is_seen_and_announced_at_its_commit(listener, other, many):
    with transaction.atomic():
        if many:
            (job,) = lifecycle.enqueue_many([{"task": "echo", "queue": "later"}])
        else:
            job, _ = lifecycle.enqueue(task="echo", queue="later")
        assert heard_before_marker(listener, other) == []
        assert other.execute("SELECT count(*) FROM jobs_job").fetchone() == (0,)
    assert heard_before_marker(listener, other) == ["later"]
    assert other.execute("SELECT id FROM jobs_job").fetchall() == [(job.pk,)]


@pytest.mark.parametrize("many", [False, True])
def test_a_rolled_back_enqueue_is_never_announced(listener, other, many):
    with pytest.raises(RuntimeError), transaction.atomic():
        if many:
            lifecycle.enqueue_many([{"task": "echo", "queue": "never"}] * 2)
        else:
            lifecycle.enqueue(task="echo", queue="never")
        raise RuntimeError("the caller changes its mind")
    assert heard_before_marker(listener, other) == []
    assert not Job.objects.exists()


def test_the_listener_connects_where_jobs_listen_database_url_says(settings):
    """A URL of its own (here the server's ``postgres`` database, not the test database
    the default connection uses), with its own application name."""
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is a PostgreSQL feature")
    settings.JOBS_LISTEN_DATABASE_URL = database_url().rsplit("/", 1)[0] + "/postgres"
    listening = Listener()
    try:
        assert listening.fileno() is not None
        assert listening.conn.info.dbname == "postgres" != connection.settings_dict["NAME"]
        assert listening.conn.info.parameter_status("application_name") == "jobqueue-listener"
    finally:
        listening.close()


@pytest.mark.parametrize("value", ["off", "OFF", "false", "none"])
def test_off_leaves_the_worker_polling(settings, value):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is a PostgreSQL feature")
    settings.JOBS_LISTEN_DATABASE_URL = value
    listening = Listener()
    assert not listening.enabled and listening.fileno() is None and listening.drain() == []


def test_resuming_a_queue_wakes_idle_workers_and_pausing_does_not(listener, other):
    lifecycle.pause_queue(name="held")
    assert heard_before_marker(listener, other) == []
    lifecycle.resume_queue(name="held")
    assert heard_before_marker(listener, other) == ["held"]
