"""Property tests: any sequence of lifecycle operations leaves a job in a legal state.

Hypothesis draws sequences of everything that can happen to a job: two workers
claiming, succeeding, failing, releasing and renewing (with whatever snapshot of
the job they last saw, so stale holders are part of the game), an operator's
cancel, retry, run-now and manual status edits, and recovery after a lease expires.
After every step the job must be in a legal state with consistent timestamps, and
a refused step must have changed nothing.
"""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import lifecycle, runner
from jobs.exceptions import TransitionRefused
from jobs.models import Job, Status

pytestmark = pytest.mark.django_db

WORKERS = ["w1", "w2"]
WORKER_OPS = ["claim", "succeed", "fail", "fail_permanently", "release", "heartbeat"]
OPS = (
    [f"{op}:{w}" for op in WORKER_OPS for w in WORKERS]
    + ["cancel", "retry", "run_now", "expire_and_recover"]
    + [f"set_status:{status}" for status in Status.values]
)


def apply(op: str, job: Job, held: dict[str, Job]) -> None:
    """Perform one operation on ``job``; ``held`` is each worker's last view of it."""
    name, _, arg = op.partition(":")
    if name == "claim":
        for claimed in lifecycle.claim(worker_id=arg, queues=[job.queue]):
            held[arg] = claimed
    elif name in {"succeed", "fail", "fail_permanently", "release", "heartbeat"}:
        seen = held.get(arg)
        if seen is None:
            return
        if name == "succeed":
            lifecycle.succeed(job=seen, worker_id=arg, result={"ok": True})
        elif name == "release":
            lifecycle.release(jobs=[seen], worker_id=arg, started=True)
        elif name == "heartbeat":
            lifecycle.heartbeat(worker_id=arg, jobs=[seen])
        else:
            lifecycle.fail(job=seen, worker_id=arg, error="boom", retry=name == "fail")
    elif name == "cancel":
        lifecycle.cancel(job_id=job.pk)
    elif name == "retry":
        lifecycle.retry(job_id=job.pk)
    elif name == "run_now":
        runner.run_now(job_id=job.pk)
    elif name == "set_status":
        assert lifecycle.set_status(job_id=job.pk, status=arg).status == arg
    elif name == "expire_and_recover":
        # Time passes: whoever holds the job stops renewing its lease.
        past = timezone.now() - timedelta(seconds=1)
        Job.objects.filter(pk=job.pk, status=Status.PROCESSING).update(lease_expires_at=past)
        lifecycle.recover()


def assert_legal(job: Job) -> None:
    """Assert the status-specific fields and the timestamps agree with each other."""
    assert job.status in Status.values
    active = job.status in {Status.QUEUED, Status.PROCESSING}
    assert (job.finished_at is None) == active, job.status
    if job.status == Status.QUEUED:
        assert job.worker_id is None and job.lease_expires_at is None
    elif job.status == Status.PROCESSING:
        # started_at is set when the attempt starts executing, not at its claim.
        assert job.worker_id and job.lease_expires_at
        assert job.attempts >= 1
        assert job.started_at is None or job.lease_expires_at > job.started_at
    else:
        assert job.lease_expires_at is None
    if job.status == Status.DONE:
        assert job.error is None
    if job.status == Status.FAILED:
        assert job.error
    assert job.created_at <= job.updated_at
    for moment in (job.started_at, job.finished_at):
        if moment is not None:
            assert job.created_at <= moment <= job.updated_at
    if job.finished_at and job.started_at:
        assert job.started_at <= job.finished_at
    numbers = list(job.history.values_list("number", flat=True))
    assert all(1 <= number <= job.attempts for number in numbers)


def snapshot(job_id: Any) -> dict[str, Any]:
    return model_to_dict(Job.objects.get(pk=job_id))


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    task=st.sampled_from(["echo", "test.fail", "test.permanent"]),
    max_attempts=st.integers(min_value=1, max_value=3),
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=20),
)
def test_any_sequence_of_operations_leaves_a_legal_job(settings_fixture, task, max_attempts, ops):
    job, _ = lifecycle.enqueue(
        task=task, payload=1, max_attempts=max_attempts, queue=f"prop-{uuid.uuid4().hex[:12]}"
    )
    held: dict[str, Job] = {}
    assert_legal(Job.objects.get(pk=job.pk))
    for op in ops:
        before = snapshot(job.pk)
        try:
            apply(op, job, held)
        except TransitionRefused:
            assert snapshot(job.pk) == before, f"refused {op} changed the job"
        assert_legal(Job.objects.get(pk=job.pk))


@pytest.fixture
def settings_fixture(settings: Any) -> None:
    """Retry at once after a failure, so requeued jobs can be claimed in the same run."""
    settings.JOBS_BACKOFF_BASE = 0
    settings.JOBS_BACKOFF_MAX = 0
