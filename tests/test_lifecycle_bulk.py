"""Set-based operator transitions: each changes exactly the jobs its guard allows."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from jobs import lifecycle
from jobs.exceptions import TransitionRefused
from jobs.models import Job, JobAttempt, Outcome, Status
from tests.conftest import row_locked_elsewhere
from tests.helpers import ALL, one_of_each, put_in

pytestmark = pytest.mark.django_db

# function -> statuses it acts on
GUARDS = {
    "cancel_many": {Status.QUEUED, Status.PROCESSING, Status.WAITING},
    "retry_many": {Status.FAILED, Status.CANCELLED, Status.DONE},
    "run_next_many": {Status.QUEUED},
    "delete_many": {
        Status.QUEUED,
        Status.DONE,
        Status.FAILED,
        Status.CANCELLED,
        Status.WAITING,
    },
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


# -- apply_to_all: a verb over every job a filter matches, in batches -------------------


def test_apply_to_all_ends_when_jobs_refuse_the_verb(make_job):
    """Jobs whose retry is refused (their idempotency key is taken again) fill whole
    batches: they are reported as skipped and never chosen again, so the loop ends and
    the other jobs are still retried."""
    refusing = []
    for key in ("a", "b", "c"):
        job = make_job(idempotency_key=key)
        lifecycle.cancel(job_id=job.pk)
        make_job(idempotency_key=key)  # the key is taken again
        refusing.append(job)
    others = [make_job() for _ in range(3)]
    for job in others:
        lifecycle.cancel(job_id=job.pk)
    result = lifecycle.apply_to_all(
        verb="retry", jobs=Job.objects.filter(status=Status.CANCELLED), batch_size=2
    )
    assert (result.changed, result.skipped) == (3, {"cancelled": 3})
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert {statuses[j.pk] for j in refusing} == {Status.CANCELLED}
    assert {statuses[j.pk] for j in others} == {Status.QUEUED}


@pytest.mark.parametrize("verb", sorted(lifecycle.VERBS))
def test_apply_to_all_changes_every_allowed_job_in_batches(make_job, verb):
    """However many jobs match, all those the verb allows change, a batch at a time; the
    rest are reported by status, as the verb alone reports them."""
    jobs = one_of_each(make_job)
    for _ in range(6):
        put_in(Status.FAILED, make_job)
    for _ in range(3):
        make_job(max_attempts=1)
    _, allowed = lifecycle.VERBS[verb]
    # (Not the waiting job's parent: cancelled, it would cancel the waiting job with it.)
    matching = Job.objects.exclude(step="parent")
    before = dict(matching.order_by().values_list("status").annotate(n=Count("pk")))
    expected = sum(n for status, n in before.items() if status in allowed)
    result = lifecycle.apply_to_all(verb=verb, jobs=matching, batch_size=2)
    assert result.changed == expected
    assert result.skipped == {s: n for s, n in before.items() if s not in allowed}
    assert result.batches == -(-expected // 2)  # ceil
    if verb == "delete":
        assert set(Job.objects.values_list("status", flat=True)) == {Status.PROCESSING}
    assert Job.objects.get(pk=jobs[Status.PROCESSING].pk).status in (
        {Status.CANCELLED} if verb == "cancel" else {Status.PROCESSING}
    )


def test_apply_to_all_only_touches_the_filter(make_job):
    mine = [put_in(Status.FAILED, make_job) for _ in range(5)]
    Job.objects.filter(pk__in=[j.pk for j in mine]).update(queue="mail")
    other = put_in(Status.FAILED, make_job)
    result = lifecycle.apply_to_all(
        verb="retry", jobs=Job.objects.filter(queue="mail", status=Status.FAILED), batch_size=2
    )
    assert (result.changed, result.batches) == (5, 3)
    assert Job.objects.get(pk=other.pk).status == Status.FAILED
    assert Job.objects.filter(queue="mail", status=Status.QUEUED).count() == 5


def test_apply_to_all_cancels_a_running_job_as_cancel_does(make_job):
    """A job a worker holds is cancelled (its attempt archived as cancelled), never deleted
    from under it; its holder's report then changes nothing."""
    make_job()
    (running,) = lifecycle.claim(worker_id="w1")
    lifecycle.apply_to_all(verb="delete", jobs=Job.objects.all())
    assert Job.objects.get(pk=running.pk).status == Status.PROCESSING
    result = lifecycle.apply_to_all(verb="cancel", jobs=Job.objects.all())
    assert result.changed == 1
    assert JobAttempt.objects.get(job_id=running.pk).outcome == Outcome.CANCELLED
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(job=running, worker_id="w1", result=1)


def test_apply_to_all_run_next_moves_queued_jobs_to_the_front_and_ends(make_job):
    later = timezone.now() + timedelta(hours=1)
    jobs = [make_job(run_after=later, priority=-5) for _ in range(3)]
    make_job(priority=100)  # already at the front: left as it is
    result = lifecycle.apply_to_all(verb="run_next", jobs=Job.objects.all(), batch_size=1)
    assert (result.changed, result.batches) == (3, 3)
    for job in jobs:
        job.refresh_from_db()
        assert (job.priority, job.run_after, job.status) == (100, None, Status.QUEUED)


def test_apply_to_all_refuses_an_unknown_verb():
    with pytest.raises(ValueError, match="unknown verb"):
        lifecycle.apply_to_all(verb="explode", jobs=Job.objects.all())


@pytest.mark.django_db(transaction=True)
def test_apply_to_all_skips_rows_another_connection_holds(make_job):
    """Each batch locks only its own rows: a row another transaction holds (a claim in
    flight) is skipped at once, not waited for."""
    held, free = (put_in(Status.FAILED, make_job) for _ in range(2))
    with row_locked_elsewhere(held.pk):
        result = lifecycle.apply_to_all(verb="retry", jobs=Job.objects.all(), batch_size=10)
        assert result.changed == 1
    assert Job.objects.get(pk=free.pk).status == Status.QUEUED
    assert Job.objects.get(pk=held.pk).status == Status.FAILED


# -- the failure's cause -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "key"),
    [
        ("ValueError: bad input", "ValueError"),
        ("shop.errors.PaymentDeclined: card 42", "shop.errors.PaymentDeclined"),
        ("timed out after 30 seconds", "timed out"),
        ("worker lost", "worker lost"),
        ("executor process died\nmore", "executor process died"),
        ("not a class name: spaces before the colon", "not a class name: spaces before the colon"),
        ("x" * 300, "x" * 200),
        (None, None),
    ],
)
def test_error_key_names_the_cause(error, key):
    assert lifecycle.error_key(error) == key


def test_a_failure_records_its_cause_and_success_clears_it(make_job):
    job = make_job(max_attempts=2)
    (job,) = lifecycle.claim(worker_id="w1")
    lifecycle.fail(job=job, worker_id="w1", error="KeyError: 'sku'")
    assert Job.objects.get(pk=job.pk).error_class == "KeyError"  # requeued, cause kept
    Job.objects.filter(pk=job.pk).update(run_after=None)
    (job,) = lifecycle.claim(worker_id="w1")
    lifecycle.succeed(job=job, worker_id="w1", result=1)
    assert Job.objects.get(pk=job.pk).error_class is None


def test_recovery_records_a_lost_worker_as_the_cause(make_job):
    make_job(max_attempts=1)
    (job,) = lifecycle.claim(worker_id="w1")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.recover() == 1
    job.refresh_from_db()
    assert (job.status, job.error_class) == (Status.FAILED, "worker lost")


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked, reason="SQLite serialises"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_verbs_over_the_same_jobs_never_fail():
    """Two operators (or API clients) apply verbs to every job at once, over and over:
    each call changes what it finds and none fails (InnoDB rolls one of two conflicting
    transactions back whole, a deadlock: that one runs again)."""
    Job.objects.bulk_create(
        Job(task="echo", status=Status.CANCELLED, finished_at=timezone.now()) for _ in range(300)
    )
    errors: list[BaseException] = []

    def operator(verb: str) -> None:
        try:
            for _ in range(15):
                lifecycle.apply_to_all(verb=verb, jobs=Job.objects.all(), batch_size=50)
                lifecycle.retry_many(ids=Job.objects.filter(status=Status.CANCELLED))
                lifecycle.cancel_many(ids=Job.objects.filter(status=Status.QUEUED))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=operator, args=(v,)) for v in ("retry", "cancel")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Job.objects.count() == 300
