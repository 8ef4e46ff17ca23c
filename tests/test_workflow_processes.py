"""Workflows across real worker processes (4 runworker processes, 2 executors each): a
group's callback fires exactly once with every member's outcome, however the members end
and whichever workers finish them at the same moment; a chain passes each result on; a
failed parent cancels its dependents, and a retried one lets them continue; a worker
killed mid-member neither loses nor doubles the callback."""

import os
import signal
import time
from pathlib import Path

import pytest

from jobs import lifecycle
from jobs.models import Job, Outcome, Status, Workflow
from tests.conftest import wait_for
from tests.helpers import callback_group

pytestmark = pytest.mark.slow

WORKERS = 4
MEMBERS = 200


def start_workers(processes, env: dict[str, str] | None = None) -> list:
    return [
        processes.worker("--concurrency", "2", "--worker-id", f"w{i}", env=env)
        for i in range(WORKERS)
    ]


def group(log: Path, members: list[dict]) -> Workflow:
    return callback_group(log, members, name="group")


def ended(workflow: Workflow, count: int):
    return lambda: (
        workflow.jobs.filter(status__in=[Status.DONE, Status.FAILED, Status.CANCELLED]).count()
        == count
    )


def check_callback(workflow: Workflow, log: Path, failed: set[int]) -> dict:
    """The callback ran exactly once, with all members' outcomes."""
    assert log.read_text() == f"{MEMBERS}\n"  # one run, which saw every member
    callback = workflow.jobs.get(step="callback")
    assert (callback.status, callback.attempts) == (Status.DONE, 1)
    members = {job.step: job for job in workflow.jobs.exclude(step="callback")}
    assert [p["id"] for p in callback.parent_results] == [
        str(members[f"m{i}"].pk) for i in range(MEMBERS)
    ]
    result = callback.result
    assert result["count"] == MEMBERS
    assert result["done"] == MEMBERS - len(failed)
    assert result["failed"] == sorted(f"m{i}" for i in failed)
    assert len(result["errors"]) == len(failed)
    return result


@pytest.mark.parametrize(
    "shape", ["all succeed", "10 fail", "same instant"], ids=["ok", "failures", "same-instant"]
)
def test_a_group_of_200_fires_its_callback_once_with_every_outcome(processes, tmp_path, shape):
    start_workers(processes)
    failed = set(range(0, MEMBERS, 20)) if shape == "10 fail" else set()
    # "same instant": every member sleeps until one moment, so the 8 executors finish
    # together, and the rest follow in grouped completions on 4 workers at once.
    until = time.time() + 2 if shape == "same instant" else None
    members = [
        {
            "name": f"m{i}",
            "task": "test.member",
            "payload": {"i": i, "fail": i in failed, "until": until},
        }
        for i in range(MEMBERS)
    ]
    workflow = group(tmp_path / "callback", members)
    wait_for(ended(workflow, MEMBERS + 1), timeout=180)
    result = check_callback(workflow, tmp_path / "callback", failed)
    assert result["results"] == {f"m{i}": (None if i in failed else i) for i in range(MEMBERS)}
    assert lifecycle.workflow_state(workflow)["state"] == ("failed" if failed else "done")


def test_a_chain_of_10_passes_each_result_to_the_next(processes):
    start_workers(processes)
    names = [f"s{i}" for i in range(10)]
    workflow = lifecycle.enqueue_workflow(
        jobs=[
            {"name": name, "task": "test.step", "payload": {"step": name}}
            | ({"after": [names[i - 1]]} if i else {})
            for i, name in enumerate(names)
        ]
    )
    wait_for(ended(workflow, 10), timeout=120)
    jobs = {job.step: job for job in workflow.jobs.all()}
    for i, name in enumerate(names):
        assert jobs[name].result == names[: i + 1]
        assert jobs[name].started_at >= (
            jobs[names[i - 1]].finished_at if i else jobs[name].created_at
        )


def test_a_failed_parent_cancels_its_dependents_and_its_retry_lets_them_continue(
    processes, tmp_path
):
    workflow = lifecycle.enqueue_workflow(
        jobs=[
            {
                "name": "charge",
                "task": "test.fail_once",
                "payload": {"marker": str(tmp_path / "m")},
            },
            {"name": "receipt", "task": "echo", "payload": "r", "after": ["charge"]},
            {"name": "notify", "task": "echo", "payload": "n", "after": ["receipt"]},
            {
                "name": "audit",
                "task": "echo",
                "payload": "a",
                "after": ["charge"],
                "on_parent_failure": "run",
            },
        ]
    )
    start_workers(processes)
    wait_for(ended(workflow, 4), timeout=60)
    jobs = {job.step: job for job in workflow.jobs.all()}
    charge = jobs["charge"]
    assert charge.status == Status.FAILED
    assert jobs["receipt"].status == jobs["notify"].status == Status.CANCELLED
    assert jobs["receipt"].error == f"cancelled: parent charge ({charge.pk}) failed"
    assert jobs["notify"].error == f"cancelled: parent receipt ({jobs['receipt'].pk}) cancelled"
    assert jobs["audit"].status == Status.DONE  # its policy: run anyway
    assert jobs["audit"].parent_results[0]["status"] == "failed"

    lifecycle.retry(job_id=charge.pk)
    wait_for(lambda: Job.objects.get(pk=jobs["notify"].pk).status == Status.DONE, timeout=60)
    jobs = {job.step: job for job in workflow.jobs.all()}
    assert jobs["charge"].result == "recovered"
    assert jobs["receipt"].parent_results[0]["result"] == "recovered"
    assert jobs["audit"].attempts == 1  # already ran: not run again
    assert lifecycle.workflow_state(workflow) == {"state": "done", "counts": {"done": 4}}


def test_a_worker_killed_mid_member_neither_loses_nor_doubles_the_callback(processes, tmp_path):
    env = {"JOBS_LEASE_SECONDS": "1"}
    marker = tmp_path / "m"
    members = [
        {"name": f"m{i}", "task": "test.member", "payload": {"i": i}} for i in range(MEMBERS)
    ]
    # One member hangs on its first run; the worker running it is killed there.
    members[7] = {
        "name": "m7",
        "task": "test.slow_once",
        "payload": {"marker": str(marker), "seconds": 60},
    }
    workflow = group(tmp_path / "callback", members)
    workers = dict(
        zip([f"w{i}" for i in range(WORKERS)], start_workers(processes, env), strict=True)
    )
    wait_for(marker.exists, timeout=60)
    slow = workflow.jobs.get(step="m7")
    holder = wait_for(lambda: Job.objects.get(pk=slow.pk).worker_id)
    os.killpg(workers[holder].pid, signal.SIGKILL)  # the worker and its executors
    wait_for(ended(workflow, MEMBERS + 1), timeout=180)
    result = check_callback(workflow, tmp_path / "callback", failed=set())
    assert result["results"]["m7"] == "second"  # recovery ran the member again
    slow.refresh_from_db()
    assert Outcome.LOST in slow.history.values_list("outcome", flat=True)
