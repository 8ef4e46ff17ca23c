"""Set-based operator transitions: each changes exactly the jobs its guard allows."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.exceptions import TransitionRefused
from jobs.models import Job, JobAttempt, Outcome, Status
from tests.helpers import ALL, one_of_each, put_in

pytestmark = pytest.mark.django_db

# function -> statuses it acts on
GUARDS = {
    "cancel_many": {Status.QUEUED, Status.PROCESSING},
    "retry_many": {Status.FAILED, Status.CANCELLED, Status.DONE},
    "run_next_many": {Status.QUEUED},
    "delete_many": {Status.QUEUED, Status.DONE, Status.FAILED, Status.CANCELLED},
}


@pytest.mark.parametrize("verb", sorted(GUARDS))
@pytest.mark.parametrize("as_queryset", [False, True])
def test_bulk_verbs_change_allowed_jobs_and_report_the_rest(make_job, verb, as_queryset):
    jobs = one_of_each(make_job)
    ids = [job.pk for job in jobs.values()]
    selection = Job.objects.filter(pk__in=ids) if as_queryset else ids
    result = getattr(lifecycle, verb)(ids=selection)
    allowed = GUARDS[verb]
    assert result.changed == len(allowed)
    assert result.skipped == {status: 1 for status in ALL if status not in allowed}
    after = dict(Job.objects.values_list("pk", "status"))
    for status, job in jobs.items():
        if status not in allowed:
            assert after[job.pk] == status  # untouched
        elif verb == "cancel_many":
            assert after[job.pk] == Status.CANCELLED
        elif verb == "delete_many":
            assert job.pk not in after
        else:
            assert after[job.pk] == Status.QUEUED


def test_cancel_many_archives_running_attempts(make_job):
    make_job()
    (running,) = lifecycle.claim(worker_id="w1")
    queued = make_job()
    result = lifecycle.cancel_many(ids=[running.pk, queued.pk])
    assert result == lifecycle.BulkResult(2, {})
    attempt = JobAttempt.objects.get()
    assert (attempt.job_id, attempt.outcome, attempt.worker_id) == (
        running.pk,
        Outcome.CANCELLED,
        "w1",
    )
    running.refresh_from_db()
    assert running.lease_expires_at is None and running.finished_at is not None
    # The worker's late report is refused, as for a single cancel.
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(job=running, worker_id="w1", result=None)


def test_retry_many_grants_another_attempt(make_job):
    failed = put_in(Status.FAILED, make_job)
    assert lifecycle.retry_many(ids=[failed.pk]).changed == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.max_attempts) == (Status.QUEUED, 1, 2)
    assert failed.finished_at is None and failed.run_after is None


def test_run_next_many_puts_jobs_at_the_front(make_job):
    make_job(priority=50)
    later = make_job(run_after=timezone.now() + timedelta(hours=1))
    assert lifecycle.run_next_many(ids=[later.pk]).changed == 1
    (claimed,) = lifecycle.claim(worker_id="w")
    assert claimed.pk == later.pk and claimed.priority == 100


def test_bulk_on_missing_ids_changes_nothing(make_job):
    assert lifecycle.cancel_many(ids=[uuid.uuid4()]) == lifecycle.BulkResult(0, {})
    assert lifecycle.retry_many(ids=[]) == lifecycle.BulkResult(0, {})


def test_delete_many_takes_the_attempt_history_along(make_job):
    failed = put_in(Status.FAILED, make_job)
    assert JobAttempt.objects.filter(job=failed).exists()
    assert lifecycle.delete_many(ids=Job.objects.all()) == lifecycle.BulkResult(1, {})
    assert not JobAttempt.objects.exists()


def test_retry_many_skips_a_job_whose_idempotency_key_is_taken_again(make_job):
    first = make_job(idempotency_key="k")
    lifecycle.cancel(job_id=first.pk)
    holder = make_job(idempotency_key="k")  # the key is free again, and taken
    other = make_job()
    lifecycle.cancel(job_id=other.pk)
    result = lifecycle.retry_many(ids=[first.pk, other.pk])
    assert (result.changed, result.skipped) == (1, {"cancelled": 1})
    assert holder.pk != first.pk
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[first.pk] == Status.CANCELLED and statuses[other.pk] == Status.QUEUED
