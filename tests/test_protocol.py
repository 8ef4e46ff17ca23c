"""The HTTP worker protocol in process: external tasks, claims, heartbeats, fenced reports.

The real server and the reference client as OS processes are in
``tests/test_remote_workers.py``.
"""

import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import lifecycle, tasks
from jobs.models import Job, JobAttempt, Status, Worker
from jobs.tasks import registry

EXTERNAL = "test.resize_remote"


@pytest.fixture
def external(monkeypatch: Any) -> tasks.TaskSpec:
    """An external task, declared for this test only."""
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    return tasks.register_external(
        EXTERNAL,
        queue="media",
        max_attempts=2,
        timeout=30,
        schema={"type": "object", "properties": {"w": {"type": "integer"}}, "required": ["w"]},
    )


@pytest.fixture
def worker(make_user: Any, client_for: Any) -> Any:
    """A client whose token holds only jobs.work_job."""
    return client_for(make_user("work"))


def claim(client: Any, **body: Any) -> Any:
    body = {"worker_id": "w1", "tasks": [EXTERNAL], **body}
    return client.post("/api/worker/claim", body, format="json")


def report(client: Any, job: Any, verb: str, **body: Any) -> Any:
    return client.post(f"/api/worker/jobs/{job['id']}/{verb}", body, format="json")


def test_external_tasks_are_listed_and_validated(api, external):
    """GET /api/tasks says external: true; a job of it is created and checked like any other."""
    listed = {t["name"]: t for t in api.get("/api/tasks").json()}
    assert listed[EXTERNAL]["external"] is True
    assert listed[EXTERNAL]["queue"] == "media"
    assert listed["echo"]["external"] is False
    bad = api.post("/api/jobs", {"task": EXTERNAL, "payload": {}}, format="json")
    assert bad.status_code == 400
    good = api.post("/api/jobs", {"task": EXTERNAL, "payload": {"w": 3}}, format="json")
    assert good.status_code == 201 and good.json()["queue"] == "media"


def test_the_builtin_claim_never_takes_external_jobs(external, make_job):
    remote = make_job(task=EXTERNAL, payload={"w": 1}, priority=10)
    local = make_job(task="echo")
    assert [job.pk for job in lifecycle.claim(worker_id="w", limit=10)] == [local.pk]
    assert [job.pk for job in lifecycle.claim(worker_id="r", limit=10, tasks=[EXTERNAL])] == [
        remote.pk
    ]


def test_without_external_tasks_the_claim_statement_is_unchanged(make_job, monkeypatch):
    """No external task declared: the built-in claim adds no task filter to its statement."""
    make_job(task="echo")
    with CaptureQueriesContext(connection) as queries:
        lifecycle.claim(worker_id="w", limit=5)
    # The statement that selects the jobs: WITH ... UPDATE ... RETURNING, or on MySQL
    # SELECT ... FOR UPDATE SKIP LOCKED (its UPDATE then names the ids).
    (statement,) = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(("WITH", "SELECT")) and "UPDATE" in q["sql"]
    ]
    selection = statement.split("RETURNING")[0]
    assert '"task"' not in selection and "`task`" not in selection


def test_a_work_token_claims_runs_and_reports(worker, external, make_job):
    """claim answers the attempt (the fencing token), the lease and the timeout; succeed
    records the result through the lifecycle; the worker is in the registry."""
    job = make_job(task=EXTERNAL, payload={"w": 5})
    answer = claim(worker, limit=10, hostname="box", pid=42)
    assert answer.status_code == 200, answer.json()
    [held] = answer.json()["jobs"]
    assert held["id"] == str(job.pk) and held["attempt"] == 1 and held["payload"] == {"w": 5}
    assert held["timeout"] == 30 and held["lease_expires_at"]
    row = Job.objects.get(pk=job.pk)
    assert row.status == Status.PROCESSING and row.worker_id == "w1" and row.started_at
    assert Worker.objects.get(pk="w1").hostname == "box"
    progress = report(worker, held, "progress", worker_id="w1", attempt=1, percent=50)
    assert progress.status_code == 200 and Job.objects.get(pk=job.pk).progress == 50
    done = report(worker, held, "succeed", worker_id="w1", attempt=1, result={"ok": True})
    assert done.status_code == 200 and done.json()["status"] == "done"
    row = Job.objects.get(pk=job.pk)
    assert row.status == Status.DONE and row.result == {"ok": True}


def test_a_work_token_may_not_list_or_delete_jobs(worker, make_job):
    job = make_job(task="echo")
    assert worker.get("/api/jobs").status_code == 403
    assert worker.delete(f"/api/jobs/{job.pk}").status_code == 403


def test_others_may_not_work_jobs(make_user, client_for, anon, external):
    viewer = client_for(make_user("view", "add", "change", "delete"))
    assert claim(viewer).status_code == 403
    assert claim(anon).status_code == 401


def test_claiming_a_task_that_is_not_external_is_a_400(worker, external):
    answer = claim(worker, tasks=["echo", EXTERNAL])
    assert answer.status_code == 400
    assert "echo" in answer.json()["errors"]["tasks"][0]


def test_a_stale_report_is_a_409_and_changes_nothing(worker, external, make_job):
    """After recovery and a new claim, the first holder's reports are refused."""
    job = make_job(task=EXTERNAL, payload={"w": 1})
    [first] = claim(worker).json()["jobs"]
    Job.objects.filter(pk=job.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert lifecycle.recover() == 1
    [second] = claim(worker, worker_id="w2").json()["jobs"]
    assert second["attempt"] == 2
    for verb, extra in [
        ("succeed", {"result": "late"}),
        ("fail", {"error": "late"}),
        ("progress", {"percent": 10}),
    ]:
        late = report(worker, first, verb, worker_id="w1", attempt=1, **extra)
        assert late.status_code == 409, late.json()
        assert late.json()["code"] == "conflict" and "no longer held" in late.json()["detail"]
    ok = report(worker, second, "succeed", worker_id="w2", attempt=2, result="kept")
    assert ok.status_code == 200
    assert Job.objects.get(pk=job.pk).result == "kept"


def test_fail_retries_or_fails_for_good(worker, external, make_job):
    job = make_job(task=EXTERNAL, payload={"w": 1})
    [held] = claim(worker).json()["jobs"]
    again = report(worker, held, "fail", worker_id="w1", attempt=1, error="boom", traceback="tb")
    assert again.json()["status"] == "queued"
    Job.objects.filter(pk=job.pk).update(run_after=None)
    [held] = claim(worker).json()["jobs"]
    final = report(worker, held, "fail", worker_id="w1", attempt=2, error="bad", retry=False)
    assert final.json()["status"] == "failed"
    assert JobAttempt.objects.filter(job=job).count() == 2


def test_heartbeat_names_attempts_taken_away(worker, external, make_job):
    kept, cancelled = (make_job(task=EXTERNAL, payload={"w": n}) for n in (1, 2))
    held = claim(worker, limit=2).json()["jobs"]
    lifecycle.cancel(job_id=cancelled.pk)
    body = {"worker_id": "w1", "jobs": [{"id": j["id"], "attempt": j["attempt"]} for j in held]}
    beat = worker.post("/api/worker/heartbeat", body, format="json").json()
    assert [item["id"] for item in beat["held"]] == [str(kept.pk)]
    assert [item["id"] for item in beat["taken"]] == [str(cancelled.pk)]


def test_release_hands_attempts_back(worker, external, make_job):
    job = make_job(task=EXTERNAL, payload={"w": 1})
    [held] = claim(worker).json()["jobs"]
    body = {"worker_id": "w1", "jobs": [{"id": held["id"], "attempt": 1}]}
    assert worker.post("/api/worker/release", body, format="json").json() == {"released": 1}
    row = Job.objects.get(pk=job.pk)
    assert row.status == Status.QUEUED and row.attempts == 0


def test_claim_waits_for_a_job_up_to_wait(worker, external, settings):
    """With nothing due, claim long-polls up to ``wait`` (capped by JOBS_WORKER_MAX_WAIT)."""
    settings.JOBS_WORKER_MAX_WAIT = 0.3
    began = time.monotonic()
    assert claim(worker, wait=5).json() == {"jobs": []}
    assert 0.25 <= time.monotonic() - began < 3


def test_reports_on_unknown_or_malformed_jobs_are_404(worker):
    for pk in (uuid.uuid4(), "not-a-uuid"):
        answer = report(worker, {"id": pk}, "succeed", worker_id="w1", attempt=1)
        assert answer.status_code == 404


def test_run_now_refuses_an_external_job_and_leaves_it_queued(api, external):
    job, _ = lifecycle.enqueue(task=EXTERNAL, payload={"w": 1})
    response = api.post(f"/api/jobs/{job.pk}/run")
    assert response.status_code == 409, response.content
    assert "external" in response.json()["detail"]
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("queued", 0)


def test_an_external_task_cannot_take_a_python_task_s_name(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from jobs import tasks
    from jobs.tasks import registry

    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    with pytest.raises(ImproperlyConfigured, match="echo"):
        tasks.register_external("echo")
