"""The state machine: every allowed transition works, every other one is refused."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import lifecycle, runner
from jobs.exceptions import JobChanged, TransitionRefused, UnknownTask
from jobs.models import Job, JobAttempt, Outcome, Status
from tests.conftest import row_locked_elsewhere
from tests.helpers import ALL, put_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("current", "target"), [(a, b) for a in ALL for b in ALL if a != b])
def test_set_status_follows_the_manual_table(make_job, current, target):
    """set_status allows exactly the edges of MANUAL_TRANSITIONS and refuses the rest."""
    job = put_in(current, make_job)
    if (current, target) in lifecycle.MANUAL_TRANSITIONS:
        assert lifecycle.set_status(job_id=job.pk, status=target).status == target
    else:
        with pytest.raises(TransitionRefused) as refused:
            lifecycle.set_status(job_id=job.pk, status=target)
        assert refused.value.current == current
        job.refresh_from_db()
        assert job.status == current


@pytest.mark.parametrize("status", ALL)
def test_set_status_to_the_same_status_changes_nothing(make_job, status):
    job = put_in(status, make_job)
    before = job.updated_at
    assert lifecycle.set_status(job_id=job.pk, status=status).updated_at == before


@pytest.mark.parametrize("verb", ["cancel", "retry"])
@pytest.mark.parametrize("status", ALL)
def test_operator_verbs_respect_their_source_states(make_job, verb, status):
    job = put_in(status, make_job)
    allowed_from, ends_in = lifecycle.TRANSITIONS[verb]
    if status in allowed_from:
        assert getattr(lifecycle, verb)(job_id=job.pk).status in ends_in
    else:
        with pytest.raises(TransitionRefused):
            getattr(lifecycle, verb)(job_id=job.pk)


@pytest.mark.parametrize("status", ALL)
def test_delete_takes_any_job_but_a_running_one(make_job, status):
    job = put_in(status, make_job)
    if status == Status.PROCESSING:
        with pytest.raises(TransitionRefused, match="cancel it first") as refused:
            lifecycle.delete(job_id=job.pk)
        assert refused.value.current == Status.PROCESSING
        assert Job.objects.filter(pk=job.pk).exists()
    else:
        assert lifecycle.delete(job_id=job.pk).pk == job.pk
        assert not Job.objects.filter(pk=job.pk).exists()
        assert not JobAttempt.objects.filter(job_id=job.pk).exists()


def test_enqueue_rejects_unknown_task():
    with pytest.raises(UnknownTask, match="nope"):
        lifecycle.enqueue(task="nope")
    assert not Job.objects.exists()


def test_claim_takes_priority_then_due_time_and_skips_deferred(make_job):
    now = timezone.now()
    low = make_job(priority=-5)
    first = make_job()
    second = make_job()
    make_job(run_after=now + timedelta(hours=1))  # not due
    overdue = make_job(run_after=now - timedelta(hours=1))  # due before the others were created
    high = make_job(priority=10)
    claimed = lifecycle.claim(worker_id="w", limit=10)
    assert [j.pk for j in claimed] == [high.pk, overdue.pk, first.pk, second.pk, low.pk]
    assert all(j.status == Status.PROCESSING and j.attempts == 1 for j in claimed)
    assert all(j.worker_id == "w" and j.lease_expires_at > now for j in claimed)


def test_claim_takes_at_most_limit_and_never_a_held_job(make_job):
    for _ in range(5):
        make_job()
    first = lifecycle.claim(worker_id="a", limit=2)
    second = lifecycle.claim(worker_id="b", limit=10)
    assert (len(first), len(second)) == (2, 3)
    assert not {j.pk for j in first} & {j.pk for j in second}
    assert lifecycle.claim(worker_id="c", limit=10) == []


@pytest.mark.parametrize("limit", [1, 2])
def test_claim_takes_no_more_than_the_limit(make_job, limit):
    """The job first in line was created last: the claim still takes exactly ``limit``."""
    for _ in range(3):
        make_job(queue="a")
    high = make_job(queue="a", priority=100)
    claimed = lifecycle.claim(worker_id="w", queues=["a"], limit=limit)
    assert len(claimed) == limit and claimed[0].pk == high.pk
    assert Job.objects.filter(status=Status.PROCESSING).count() == limit


def test_claim_filters_queues(make_job):
    make_job(queue="a")
    b = make_job(queue="b")
    assert [j.pk for j in lifecycle.claim(worker_id="w", queues=["b"], limit=5)] == [b.pk]


def test_succeed_is_fenced_on_worker_and_attempt(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w1")
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(job=job, worker_id="someone-else", result=1)
    stale = Job.objects.get(pk=job.pk)
    stale.attempts -= 1
    with pytest.raises(TransitionRefused):
        lifecycle.succeed(job=stale, worker_id="w1", result=1)
    job.started_at = started = timezone.now()  # as runner.execute does: recorded with it
    lifecycle.succeed(job=job, worker_id="w1", result={"ok": True})
    job.refresh_from_db()
    assert (job.status, job.result, job.lease_expires_at) == (Status.DONE, {"ok": True}, None)
    assert job.finished_at >= job.started_at == started


def test_succeed_many_records_each_result_and_skips_jobs_taken_away(make_job):
    for _ in range(5):
        make_job(max_attempts=3)
    kept, cancelled, stale, other, none = lifecycle.claim(worker_id="w1", limit=5)
    lifecycle.cancel(job_id=cancelled.pk)
    stale.attempts -= 1  # an older attempt's report
    Job.objects.filter(pk=other.pk).update(worker_id="w2")  # recovered and re-claimed
    results = [{"a": [1, 2]}, 1, 2, 3, None]
    held = [kept, cancelled, stale, other, none]
    recorded = lifecycle.succeed_many(
        worker_id="w1", completions=list(zip(held, results, strict=True))
    )
    assert recorded == 2
    rows = {job.pk: job for job in Job.objects.all()}
    assert (rows[kept.pk].status, rows[kept.pk].result) == (Status.DONE, {"a": [1, 2]})
    assert (rows[none.pk].status, rows[none.pk].result) == (Status.DONE, None)
    assert rows[none.pk].finished_at is not None and rows[none.pk].lease_expires_at is None
    assert rows[cancelled.pk].status == Status.CANCELLED
    assert rows[stale.pk].status == rows[other.pk].status == Status.PROCESSING
    assert (kept.status, stale.status) == (Status.DONE, Status.PROCESSING)  # as recorded


def test_succeed_many_is_one_write_of_the_group_on_a_server(make_job):
    """On PostgreSQL and MariaDB/MySQL a group of successes is one statement, whatever its
    size (SQLite, which has no round trip to save, runs one per job)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor == "sqlite":
        pytest.skip("one UPDATE per job on SQLite")
    for _ in range(20):
        make_job()
    claimed = lifecycle.claim(worker_id="w", limit=20)
    with CaptureQueriesContext(connection) as captured:
        assert lifecycle.succeed_many(worker_id="w", completions=[(j, 1) for j in claimed]) == 20
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates
    assert Job.objects.filter(status=Status.DONE, result=1).count() == 20


def test_fail_retries_with_backoff_then_lands_in_failed(make_job, settings):
    settings.JOBS_BACKOFF_BASE = 10
    job = make_job(max_attempts=2)
    (job,) = lifecycle.claim(worker_id="w")
    before = timezone.now()
    assert lifecycle.fail(job=job, worker_id="w", error="E1", traceback="tb1") == Status.QUEUED
    job.refresh_from_db()
    assert job.error == "E1" and job.worker_id is None
    assert before + timedelta(seconds=5) <= job.run_after <= before + timedelta(seconds=10.5)
    Job.objects.filter(pk=job.pk).update(run_after=None)  # skip the wait
    (job,) = lifecycle.claim(worker_id="w")
    assert job.attempts == 2
    assert lifecycle.fail(job=job, worker_id="w", error="E2") == Status.FAILED
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.finished_at is not None
    history = list(job.history.values_list("number", "outcome", "error"))
    assert history == [(1, Outcome.FAILED, "E1"), (2, Outcome.FAILED, "E2")]


def test_fail_without_retry_fails_at_once(make_job):
    make_job(max_attempts=5)
    (job,) = lifecycle.claim(worker_id="w")
    assert lifecycle.fail(job=job, worker_id="w", error="bad", retry=False) == Status.FAILED


@pytest.mark.parametrize("attempt", [1, 2, 3, 10, 50])
def test_backoff_is_equal_jitter_under_an_exponential_cap(attempt):
    ceiling = min(100.0, 1.0 * 2 ** (attempt - 1))
    samples = [lifecycle.backoff(attempt, base=1.0, cap=100.0) for _ in range(200)]
    assert all(ceiling / 2 <= s <= ceiling for s in samples)
    assert max(samples) - min(samples) > ceiling / 4  # spread over the range, not a constant


def test_recover_requeues_expired_leases_and_fails_exhausted_ones(make_job):
    make_job(max_attempts=2)
    make_job(max_attempts=1)
    claimed = lifecycle.claim(worker_id="dead", limit=2)
    assert lifecycle.recover() == 0  # leases still valid
    later = timezone.now() + timedelta(hours=1)
    assert lifecycle.recover(now=later) == 2
    statuses = {j.max_attempts: j.status for j in Job.objects.all()}
    assert statuses == {2: Status.QUEUED, 1: Status.FAILED}
    assert set(JobAttempt.objects.values_list("outcome", flat=True)) == {Outcome.LOST}
    # The dead worker cannot report afterwards.
    for job in claimed:
        with pytest.raises(TransitionRefused):
            lifecycle.succeed(job=job, worker_id="dead", result=None)


def test_heartbeat_extends_only_held_leases(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w", lease_seconds=1)
    held = lifecycle.heartbeat(worker_id="w", jobs=[job])
    assert held == {(job.pk, 1)}
    job.refresh_from_db()
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=5)
    lifecycle.cancel(job_id=job.pk)
    assert lifecycle.heartbeat(worker_id="w", jobs=[job]) == set()


def test_heartbeat_tells_an_attempt_taken_and_claimed_again_from_the_new_one(make_job):
    """Moved back to the queue by hand and claimed again by the same worker: the old
    attempt is no longer held, the new one is."""
    make_job()
    (old,) = lifecycle.claim(worker_id="w")
    lifecycle.set_status(job_id=old.pk, status=Status.QUEUED)
    (new,) = lifecycle.claim(worker_id="w")
    assert lifecycle.heartbeat(worker_id="w", jobs=[old, new]) == {(new.pk, 2)}


def test_a_claimed_job_starts_when_it_runs_not_when_it_is_claimed(make_job):
    make_job(task="echo", payload=1)
    (job,) = lifecycle.claim(worker_id="w")
    assert job.started_at is None and Job.objects.get(pk=job.pk).started_at is None
    started = timezone.now() - timedelta(seconds=2)
    assert lifecycle.mark_started(worker_id="w", starts=[(job, started)]) == 1
    assert Job.objects.get(pk=job.pk).started_at == started
    assert lifecycle.mark_started(worker_id="other", starts=[(job, timezone.now())]) == 0
    before = timezone.now()
    runner.execute(job, worker_id="w")
    job.refresh_from_db()
    assert job.status == Status.DONE and before <= job.started_at <= job.finished_at


def test_release_gives_back_an_unstarted_attempt(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    assert lifecycle.release(jobs=[job], worker_id="w") == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_id) == (Status.QUEUED, 0, None)


def test_release_of_a_started_attempt_keeps_it_and_its_history(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    started = timezone.now()
    lifecycle.mark_started(worker_id="w", starts=[(job, started)])
    job.started_at = started
    assert lifecycle.release(jobs=[job], worker_id="w", started=True, reason="stopped") == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_id) == (Status.QUEUED, 1, None)
    history = list(job.history.values_list("number", "outcome", "error", "worker_id"))
    assert history == [(1, Outcome.RELEASED, "stopped", "w")]
    assert job.history.get().started_at == started


def test_a_refused_release_writes_no_history(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    assert lifecycle.release(jobs=[job], worker_id="other", started=True) == 0
    job.attempts += 1  # a stale attempt number
    assert lifecycle.release(jobs=[job], worker_id="w", started=True) == 0
    assert not JobAttempt.objects.exists()
    assert Job.objects.get(pk=job.pk).status == Status.PROCESSING


def test_a_released_attempt_keeps_the_start_the_row_recorded(make_job):
    """The caller's copy of the job may predate ``mark_started``: the history takes the row's."""
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    started = timezone.now()
    lifecycle.mark_started(worker_id="w", starts=[(job, started)])
    assert job.started_at is None  # this copy never saw it
    lifecycle.release(jobs=[job], worker_id="w", started=True)
    assert job.history.get().started_at == started


def test_an_operator_requeueing_a_running_job_records_its_attempt(make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    lifecycle.set_status(job_id=job.pk, status=Status.QUEUED)
    history = list(job.history.values_list("number", "outcome", "error"))
    assert history == [(1, Outcome.RELEASED, "requeued by an operator")]


def test_retry_grants_at_least_one_more_attempt(make_job):
    job = put_in(Status.FAILED, make_job)
    job = lifecycle.retry(job_id=job.pk)
    assert (job.status, job.attempts, job.max_attempts) == (Status.QUEUED, 1, 2)
    (job,) = lifecycle.claim(worker_id="w")
    assert job.attempts == 2


def test_manual_processing_gets_a_lease_that_recovery_honours(make_job):
    job = make_job()
    job = lifecycle.set_status(job_id=job.pk, status=Status.PROCESSING)
    assert job.worker_id == lifecycle.MANUAL_HOLDER and job.lease_expires_at is not None
    assert lifecycle.recover(now=timezone.now() + timedelta(hours=1)) == 1
    job.refresh_from_db()
    assert job.status == Status.QUEUED


def test_idempotency_key_returns_the_unfinished_job(make_job):
    first, created = lifecycle.enqueue(task="echo", idempotency_key="k1")
    again, created_again = lifecycle.enqueue(task="echo", idempotency_key="k1")
    assert created and not created_again and again.pk == first.pk
    lifecycle.cancel(job_id=first.pk)
    third, created_third = lifecycle.enqueue(task="echo", idempotency_key="k1")
    assert created_third and third.pk != first.pk


def test_idempotency_is_a_database_constraint(make_job):
    make_job(idempotency_key="k2")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(task="echo", idempotency_key="k2")


def test_retry_refuses_when_another_unfinished_job_holds_the_idempotency_key(make_job):
    """Found by the API fuzzer: this used to be an IntegrityError (a 500)."""
    first = make_job(idempotency_key="k")
    lifecycle.cancel(job_id=first.pk)
    second = make_job(idempotency_key="k")
    with pytest.raises(TransitionRefused, match="idempotency key") as refused:
        lifecycle.retry(job_id=first.pk)
    assert refused.value.current == Status.CANCELLED
    assert Job.objects.get(pk=first.pk).status == Status.CANCELLED
    assert Job.objects.get(pk=second.pk).status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_row_another_connection_has_locked(make_job):
    """A second, real connection locks the first job in line; claim takes the next one
    at once instead of waiting for the lock."""
    first, second = make_job(priority=5), make_job()
    with row_locked_elsewhere(first.pk):
        claimed = lifecycle.claim(worker_id="w", limit=2)
        assert [job.pk for job in claimed] == [second.pk]
    assert [job.pk for job in lifecycle.claim(worker_id="w", limit=2)] == [first.pk]


def test_enqueue_many_stores_every_field_as_given():
    """Bulk rows (COPY on PostgreSQL, INSERTs elsewhere) read back exactly as enqueued."""
    when = timezone.now() + timedelta(hours=1)
    specs = [
        {"task": "echo", "payload": {"k": [1, "x", None], "t": "tab\\there\nnew\\\\line"}},
        {"task": "echo", "payload": "text with\ttab, 'quotes', \"double\" and \\ backslash"},
        {"task": "echo", "payload": None, "queue": "q-2", "priority": -5},
        {"task": "echo", "payload": [True, 1.5], "run_after": when, "timeout": 2.5},
        {"task": "echo", "payload": "ünïcödé ✓", "max_attempts": 7},
    ]
    created = lifecycle.enqueue_many(specs)
    fields = ["task", "payload", "queue", "priority", "run_after", "timeout", "max_attempts"]
    stored = {job.pk: job for job in Job.objects.all()}
    assert len(stored) == len(specs)
    for job, spec in zip(created, specs, strict=True):
        row = stored[job.pk]
        assert [getattr(row, f) for f in fields] == [getattr(job, f) for f in fields]
        assert row.payload == spec["payload"] and row.status == Status.QUEUED
        assert (row.created_at, row.attempts, row.idempotency_key) == (job.created_at, 0, None)
    assert stored[created[3].pk].run_after == when


def test_enqueue_many_keeps_the_order_of_its_jobs_in_the_claim_order():
    assert lifecycle.enqueue_many([]) == []
    created = lifecycle.enqueue_many([{"task": "echo", "payload": i} for i in range(30)])
    # Strictly increasing due times: the order holds wherever the rows land on disk.
    stored = dict(Job.objects.values_list("pk", "created_at"))
    due = [stored[job.pk] for job in created]
    assert due == sorted(set(due))
    claimed = [job for _ in range(3) for job in lifecycle.claim(worker_id="w", limit=10)]
    assert [job.pk for job in claimed] == [job.pk for job in created]


# -- an operator's edit of a job as they saw it (issue 12, point 9) --------------------------


@pytest.mark.parametrize(("seen", "current"), [(a, b) for a in ALL for b in ALL])
def test_edit_is_a_compare_and_set_on_the_status_seen(make_job, seen, current):
    """An edit applies only to a job still in the status its author saw; otherwise it
    raises JobChanged and changes nothing, status edit or not."""
    job = put_in(current, make_job)
    target = next((to for (frm, to) in lifecycle.MANUAL_TRANSITIONS if frm == seen), None)
    if seen == current:
        edited = lifecycle.edit(job_id=job.pk, seen=seen, status=target, changes={"priority": 9})
        assert (edited.status, edited.priority) == (target, 9)
        return
    with pytest.raises(JobChanged) as changed:
        lifecycle.edit(job_id=job.pk, seen=seen, status=target, changes={"priority": 9})
    assert changed.value.current == current
    after = Job.objects.get(pk=job.pk)
    assert (after.status, after.priority, after.updated_at) == (current, 0, job.updated_at)


def test_edit_changes_the_status_first_so_the_fields_given_stay(make_job):
    """Requeueing resets run_after; a run_after given with the requeue is kept."""
    job = put_in(Status.FAILED, make_job)
    later = timezone.now() + timedelta(hours=1)
    edited = lifecycle.edit(
        job_id=job.pk, seen=Status.FAILED, status=Status.QUEUED, changes={"run_after": later}
    )
    assert (edited.status, edited.run_after) == (Status.QUEUED, later)


def test_edit_refuses_fields_of_the_state_machine(make_job):
    job = make_job()
    for field in ("status", "attempts", "worker_id"):
        with pytest.raises(ValueError, match=field):
            lifecycle.edit(job_id=job.pk, seen=Status.QUEUED, changes={field: None})


def test_edit_of_a_deleted_job_says_so(make_job):
    job = make_job()
    Job.objects.filter(pk=job.pk).delete()
    with pytest.raises(JobChanged) as changed:
        lifecycle.edit(job_id=job.pk, seen=Status.QUEUED, changes={"priority": 1})
    assert changed.value.current is None


@pytest.mark.django_db(transaction=True)
def test_edit_holds_the_job_in_the_status_seen_until_it_commits(make_job):
    """From the edit's check on, no one else can move the job: a second, real connection
    cannot claim it until the edit's transaction ends (the check itself locks the row)."""
    from django.db import connection

    from tests.conftest import other_connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite's IMMEDIATE transactions hold the database's one write lock")
    job = make_job()
    with other_connection() as other:
        cursor = other.cursor()
        if connection.vendor == "mysql":
            import MySQLdb

            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
            lock_wait = MySQLdb.OperationalError
        else:
            import psycopg

            cursor.execute("SET lock_timeout = '1s'")
            lock_wait = psycopg.errors.LockNotAvailable
        with transaction.atomic():
            lifecycle.edit(job_id=job.pk, seen=Status.QUEUED)
            with pytest.raises(lock_wait):
                cursor.execute(
                    "UPDATE jobs_job SET status = 'processing' WHERE id = %s AND status = 'queued'",
                    [str(job.pk) if connection.vendor == "mysql" else job.pk],
                )
            other.rollback()
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED


# -- the cost of creating jobs --------------------------------------------------------------


def test_enqueue_is_one_statement_with_its_notification(django_assert_num_queries):
    """One job is one INSERT (on PostgreSQL with its pg_notify in the same statement): no
    savepoint, no separate NOTIFY, no read. Inside a transaction, it commits with it."""
    with django_assert_num_queries(1) as captured:
        lifecycle.enqueue(task="echo", queue="q1")
    (query,) = captured.captured_queries
    assert query["sql"].lstrip().startswith("WITH" if "pg_notify" in query["sql"] else "INSERT")
    assert Job.objects.filter(queue="q1").count() == 1


def test_enqueue_many_splits_its_insert_under_the_parameter_limit():
    """On SQLite, rows go in multi-row INSERTs of as many rows as its variable limit allows."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL uses COPY")
    import sqlite3

    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    columns = len(Job._meta.concrete_fields)
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 4 * columns + 1)  # 4 rows
    try:
        with CaptureQueriesContext(connection) as captured:
            created = lifecycle.enqueue_many([{"task": "echo", "payload": i} for i in range(10)])
    finally:
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    inserts = [q for q in captured.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    stored = dict(Job.objects.values_list("pk", "payload"))
    assert [stored[job.pk] for job in created] == list(range(10))
