"""Workflows in one process: dependencies, chains, groups with a callback, and the rules of
the graph (``lifecycle.enqueue_workflow``). Real worker processes: test_workflow_processes.py."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.exceptions import InvalidJob, TransitionRefused
from jobs.models import Dependency, Job, Status, Workflow
from jobs.testing import run_jobs
from tests.helpers import callback_group

pytestmark = pytest.mark.django_db


def steps(workflow: Workflow) -> dict[str, Job]:
    return {job.step: job for job in workflow.jobs.all()}


def chain(*names: str, task: str = "echo", policy: str = "cancel", **extra) -> Workflow:
    jobs = [
        {"name": name, "task": task, "payload": {"step": name}, **extra}
        | ({"after": [names[i - 1]], "on_parent_failure": policy} if i else {})
        for i, name in enumerate(names)
    ]
    return lifecycle.enqueue_workflow(jobs=jobs)


def fan_in() -> Workflow:
    """``c`` waits for ``a`` and ``b``."""
    return lifecycle.enqueue_workflow(
        jobs=[
            {"name": "a", "task": "echo"},
            {"name": "b", "task": "echo"},
            {"name": "c", "task": "echo", "after": ["a", "b"]},
        ]
    )


def finish(job: Job, *, result=None, error: str | None = None) -> None:
    """Claim ``job`` and end it: done with ``result``, or failed for good with ``error``."""
    held = lifecycle.claim_for_run(job_id=job.pk, worker_id="w")
    if error is None:
        lifecycle.succeed(job=held, worker_id="w", result=result)
    else:
        lifecycle.fail(job=held, worker_id="w", error=error, retry=False)


def test_a_job_with_parents_waits_and_is_never_claimed():
    wf = chain("a", "b")
    jobs = steps(wf)
    assert (jobs["a"].status, jobs["b"].status) == (Status.QUEUED, Status.WAITING)
    assert jobs["a"].has_dependents and not jobs["b"].has_dependents
    claimed = lifecycle.claim(worker_id="w", limit=10)
    assert [job.pk for job in claimed] == [jobs["a"].pk]
    with pytest.raises(TransitionRefused):
        lifecycle.claim_for_run(job_id=jobs["b"].pk, worker_id="w")


def test_the_last_parent_to_finish_releases_the_child_with_every_outcome():
    wf = fan_in()
    jobs = steps(wf)
    finish(jobs["a"], result="A")
    assert Job.objects.get(pk=jobs["c"].pk).status == Status.WAITING
    finish(jobs["b"], result="B")
    c = Job.objects.get(pk=jobs["c"].pk)
    assert c.status == Status.QUEUED
    assert c.parent_results == [
        {"id": str(jobs["a"].pk), "name": "a", "status": "done", "result": "A", "error": None},
        {"id": str(jobs["b"].pk), "name": "b", "status": "done", "result": "B", "error": None},
    ]


def test_a_chain_of_10_passes_each_result_to_the_next():
    wf = chain(*[f"s{i}" for i in range(10)], task="test.step")
    ran = run_jobs()
    assert [job.step for job in ran] == [f"s{i}" for i in range(10)]
    assert steps(wf)["s9"].result == [f"s{i}" for i in range(10)]
    assert lifecycle.workflow_state(wf) == {"state": "done", "counts": {"done": 10}}


def test_a_group_callback_gets_every_outcome_once_also_of_failed_members(tmp_path):
    log = tmp_path / "callback"
    members = [
        {"name": f"m{i}", "task": "test.member", "payload": {"i": i, "fail": i % 5 == 0}}
        for i in range(20)
    ]
    wf = callback_group(log, members)
    run_jobs()
    assert log.read_text() == "20\n"
    result = steps(wf)["callback"].result
    assert result["count"] == 20
    assert result["done"] == 16
    assert result["results"] == {f"m{i}": (i if i % 5 else None) for i in range(20)}
    assert result["failed"] == ["m0", "m10", "m15", "m5"]
    assert "PermanentFailure: member 5 failed" in " ".join(result["errors"])
    assert lifecycle.workflow_state(wf)["state"] == "failed"


def test_a_failed_parent_cancels_its_dependents_naming_it_down_the_graph():
    wf = chain("a", "b", "c")
    jobs = steps(wf)
    finish(jobs["a"], error="ValueError: no")
    b, c = (Job.objects.get(pk=jobs[n].pk) for n in "bc")
    assert b.status == c.status == Status.CANCELLED
    assert b.error == f"cancelled: parent a ({jobs['a'].pk}) failed"
    assert c.error == f"cancelled: parent b ({jobs['b'].pk}) cancelled"
    assert b.error_class == lifecycle.PARENT_ENDED
    assert lifecycle.workflow_state(wf) == {
        "state": "failed",
        "counts": {"failed": 1, "cancelled": 2},
    }


def test_a_retried_parent_lets_its_cancelled_dependents_continue():
    wf = chain("a", "b", "c", task="test.step")
    jobs = steps(wf)
    finish(jobs["a"], error="ValueError: no")
    lifecycle.retry(job_id=jobs["a"].pk)
    assert {j.step: j.status for j in wf.jobs.all()} == {
        "a": Status.QUEUED,
        "b": Status.WAITING,
        "c": Status.WAITING,
    }
    run_jobs()
    assert steps(wf)["c"].result == ["a", "b", "c"]


def test_the_run_policy_runs_the_dependent_after_a_failed_parent():
    wf = chain("a", "b", policy="run")
    jobs = steps(wf)
    finish(jobs["a"], error="ValueError: no")
    b = Job.objects.get(pk=jobs["b"].pk)
    assert b.status == Status.QUEUED
    assert b.parent_results[0]["status"] == "failed"
    assert b.parent_results[0]["error"] == "ValueError: no"


def test_retrying_a_failed_member_before_the_callback_ran_makes_it_wait_again():
    wf = lifecycle.enqueue_workflow(
        jobs=[
            {"name": "a", "task": "echo"},
            {"name": "b", "task": "echo"},
            {"name": "cb", "task": "echo", "after": ["a", "b"], "on_parent_failure": "run"},
        ]
    )
    jobs = steps(wf)
    finish(jobs["a"], error="ValueError: no")
    lifecycle.retry(job_id=jobs["a"].pk)
    finish(jobs["b"], result=2)
    assert Job.objects.get(pk=jobs["cb"].pk).status == Status.WAITING  # a runs again first
    a = Job.objects.get(pk=jobs["a"].pk)
    finish(a, result=1)
    cb = Job.objects.get(pk=jobs["cb"].pk)
    assert cb.status == Status.QUEUED
    assert [p["result"] for p in cb.parent_results] == [1, 2]


def test_cancelling_a_waiting_job_cancels_its_own_dependents():
    wf = chain("a", "b", "c")
    jobs = steps(wf)
    lifecycle.cancel(job_id=jobs["b"].pk)
    assert Job.objects.get(pk=jobs["c"].pk).status == Status.CANCELLED
    finish(jobs["a"], result=1)
    assert Job.objects.get(pk=jobs["b"].pk).status == Status.CANCELLED


def test_deleting_a_parent_cancels_or_releases_its_dependents_by_policy():
    wf = lifecycle.enqueue_workflow(
        jobs=[
            {"name": "a", "task": "echo"},
            {"name": "strict", "task": "echo", "after": ["a"]},
            {"name": "lenient", "task": "echo", "after": ["a"], "on_parent_failure": "run"},
        ]
    )
    jobs = steps(wf)
    lifecycle.delete(job_id=jobs["a"].pk)
    strict, lenient = (Job.objects.get(pk=jobs[n].pk) for n in ("strict", "lenient"))
    assert strict.status == Status.CANCELLED
    assert strict.error == f"cancelled: parent a ({jobs['a'].pk}) deleted"
    assert lenient.status == Status.QUEUED
    assert lenient.parent_results[0]["status"] == "deleted"


def test_bulk_delete_and_cancel_settle_dependents():
    one, two = chain("a", "b"), chain("a", "b")
    lifecycle.delete_many(ids=[steps(one)["a"].pk])
    lifecycle.cancel_many(ids=[steps(two)["a"].pk])
    assert steps(one)["b"].status == steps(two)["b"].status == Status.CANCELLED


def test_succeed_many_releases_dependents_of_the_whole_batch():
    members = [{"name": f"m{i}", "task": "echo"} for i in range(5)]
    cb = {"name": "cb", "task": "echo", "after": [m["name"] for m in members]}
    wf = lifecycle.enqueue_workflow(jobs=[*members, cb])
    claimed = lifecycle.claim(worker_id="w", limit=10)
    assert len(claimed) == 5
    lifecycle.succeed_many(worker_id="w", completions=[(job, job.step) for job in claimed])
    cb = steps(wf)["cb"]
    assert cb.status == Status.QUEUED
    assert [p["result"] for p in cb.parent_results] == [f"m{i}" for i in range(5)]


def test_recovery_that_fails_a_parent_settles_its_dependents():
    wf = chain("a", "b", max_attempts=1)
    lifecycle.claim(worker_id="w", limit=1, lease_seconds=1)
    lifecycle.recover(now=timezone.now() + timedelta(minutes=1))
    jobs = steps(wf)
    assert (jobs["a"].status, jobs["b"].status) == (Status.FAILED, Status.CANCELLED)
    assert jobs["b"].error == f"cancelled: parent a ({jobs['a'].pk}) failed"


def test_cancel_workflow_cancels_what_has_not_started():
    wf = chain("a", "b", "c")
    (a,) = lifecycle.claim(worker_id="w", limit=1)
    result = lifecycle.cancel_workflow(workflow_id=wf.pk)
    assert result.changed == 2
    after = steps(wf)
    assert after["a"].status == Status.PROCESSING
    assert after["b"].status == after["c"].status == Status.CANCELLED
    lifecycle.succeed(job=a, worker_id="w", result=1)
    assert steps(wf)["b"].status == Status.CANCELLED


def test_a_purge_keeps_a_parent_whose_dependent_still_waits():
    from jobs.retention import purge

    wf = fan_in()
    jobs = steps(wf)
    finish(jobs["a"], result="A")
    assert purge(older_than=timedelta(0), now=timezone.now() + timedelta(days=1)) == {
        "done": 0,
        "failed": 0,
        "cancelled": 0,
    }
    finish(jobs["b"], result="B")
    purge(older_than=timedelta(0), now=timezone.now() + timedelta(days=1))
    c = Job.objects.get(pk=jobs["c"].pk)
    assert c.status == Status.QUEUED
    assert [p["result"] for p in c.parent_results] == ["A", "B"]
    assert Dependency.objects.filter(child=c).count() == 2  # the edges outlive the parents


@pytest.mark.parametrize(
    ("jobs", "field", "message"),
    [
        (
            [{"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}],
            "jobs",
            "The jobs wait for each other in a cycle: a -> b -> a.",
        ),
        ([{"name": "a", "after": ["a"]}], "jobs", "cycle: a -> a."),
        ([{"name": "a", "after": ["nope"]}], "jobs.0.after", "No job is named 'nope'."),
        ([{"name": "a"}, {"name": "a"}], "jobs.1.name", "Job 0 has the name 'a' too."),
        ([{"name": "a", "task": "no.such.task"}], "jobs.0.task", ""),
        ([{"name": "a", "priority": 500}], "jobs.0.priority", "Use a number"),
        ([{"name": "a", "idempotency_key": "k"}], "jobs.0.idempotency_key", "Unknown field"),
        ([{"name": "a", "on_parent_failure": "maybe"}], "jobs.0.on_parent_failure", "cancel"),
        ([], "jobs", "at least one"),
    ],
)
def test_an_invalid_graph_names_its_fault_and_creates_nothing(jobs, field, message):
    with pytest.raises(InvalidJob) as raised:
        lifecycle.enqueue_workflow(jobs=[{"task": "echo", **job} for job in jobs])
    assert message in " ".join(raised.value.errors[field])
    assert not Job.objects.exists()
    assert not Workflow.objects.exists()


def test_the_python_api_chains_and_groups(tmp_path):
    import jobs

    chained = jobs.chain(jobs=[{"task": "test.step", "payload": {"step": n}} for n in "abc"])
    grouped = jobs.group(
        jobs=[{"task": "test.member", "payload": {"i": i}} for i in range(3)],
        then={"task": "test.collect", "payload": {"path": str(tmp_path / "log")}},
    )
    run_jobs()
    assert steps(chained)["step-2"].result == ["a", "b", "c"]
    assert steps(grouped)["then"].result["results"] == {"member-0": 0, "member-1": 1, "member-2": 2}
    assert jobs.workflow_state(workflow_id=grouped.pk) == {"state": "done", "counts": {"done": 4}}
    with pytest.raises(LookupError):
        jobs.workflow_state(workflow_id="nope")


def test_the_python_api_cancels_a_workflow():
    import jobs

    workflow = jobs.enqueue_workflow(
        jobs=[{"name": "a", "task": "echo"}, {"name": "b", "task": "echo", "after": ["a"]}]
    )
    assert jobs.cancel_workflow(workflow_id=str(workflow.pk)) == {
        "state": "cancelled",
        "counts": {"cancelled": 2},
    }
