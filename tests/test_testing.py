"""Running jobs inside a test's transaction: jobs.testing.run_jobs and runworker --once."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from jobs import lifecycle
from jobs.models import Job, Status
from jobs.testing import run_jobs
from tests import django_tasks as dt

pytestmark = pytest.mark.django_db  # a transaction rolled back after each test, as TestCase


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_run_jobs_runs_due_jobs_in_claim_order_and_returns_them(make_job):
    low = make_job(task="echo", payload="low", priority=-1)
    high = make_job(task="echo", payload="high", priority=5)
    failing = make_job(task="test.fail", payload="x", max_attempts=1)
    ran = run_jobs()
    assert [job.pk for job in ran] == [high.pk, failing.pk, low.pk]
    assert [(job.status, job.result) for job in ran] == [
        (Status.DONE, "high"),
        (Status.FAILED, None),
        (Status.DONE, "low"),
    ]
    assert ran[1].error == "ValueError: failed on 'x'"
    assert run_jobs() == []


def test_run_jobs_leaves_retries_for_later_and_honours_queues_and_limit(make_job):
    retried = make_job(task="test.fail", max_attempts=2)
    other = make_job(task="echo", queue="other")
    first, second = make_job(task="echo"), make_job(task="echo")
    assert [job.pk for job in run_jobs(queues=["default"], limit=2)] == [retried.pk, first.pk]
    assert Job.objects.get(pk=retried.pk).status == Status.QUEUED  # its backoff is not due
    assert [job.pk for job in run_jobs(queues=["default"])] == [second.pk]
    assert Job.objects.get(pk=other.pk).status == Status.QUEUED


def test_run_jobs_runs_django_tasks_with_their_results():
    result = dt.add.enqueue(2, 3)
    [job] = run_jobs()
    result.refresh()
    assert job.status == Status.DONE and result.return_value == 5


def test_runworker_once_in_a_test_transaction_runs_the_jobs_and_returns(make_job):
    """Executor processes cannot see the test's transaction, and closing the connection
    would end it: inside a transaction the worker runs the due jobs in-process."""
    assert connection.in_atomic_block
    jobs = [make_job(task="echo", payload=i) for i in range(3)]
    result = dt.add.enqueue(20, 22)
    with deadline(30):
        call_command("runworker", "--once")
    assert [Job.objects.get(pk=job.pk).result for job in jobs] == [0, 1, 2]
    result.refresh()
    assert result.return_value == 42
    assert connection.in_atomic_block and connection.is_usable()
    assert lifecycle.enqueue(task="echo")[0].status == Status.QUEUED  # still the same transaction


def test_runworker_max_jobs_in_a_transaction_stops_after_that_many(make_job):
    for i in range(3):
        make_job(task="echo", payload=i)
    with transaction.atomic(), deadline(30):
        call_command("runworker", "--max-jobs", "2")
    assert Job.objects.filter(status=Status.QUEUED).count() == 1
