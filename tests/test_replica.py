"""A read replica (``DATABASE_REPLICA_URL``): which queries go where.

A fresh process runs the service's settings with the replica alias pointed at the test
database itself (a real streaming replica cannot run here), records the queries each
alias ran during each call, and reports the tables each touched. The admin's job list
and dashboard, ``/api/stats`` and ``/metrics`` read the jobs from the replica; the job
page, every write (admin actions, the API, the lifecycle and a worker's claim and
outcome) and every read inside them stay on the primary.
"""

import json
import os

import pytest

from tests.conftest import database_url, run_python

PROBE = r"""
import json, re
import django
django.setup()
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from jobs import lifecycle, runner

settings.STORAGES = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # no collectstatic here
admin = User.objects.create_superuser("replica-admin", password="x")
client = Client()
client.force_login(admin)
job, _ = lifecycle.enqueue(task="echo", payload=1)
other, _ = lifecycle.enqueue(task="echo", payload=2)

def tables(queries):
    return sorted({t for q in queries for t in re.findall(r'"?(jobs_[a-z]+)"?', q["sql"])})

def run(call):
    with CaptureQueriesContext(connections["default"]) as primary, \
         CaptureQueriesContext(connections["replica"]) as replica:
        status = call()
    return {"status": status, "primary": tables(primary.captured_queries),
            "replica": tables(replica.captured_queries)}

def claim_and_run():
    (claimed,) = lifecycle.claim(worker_id="w", limit=1)
    return runner.execute(claimed, worker_id="w")

seen = {
    "list": run(lambda: client.get("/admin/jobs/job/?status__exact=queued").status_code),
    "dashboard": run(lambda: client.get("/admin/jobs/job/dashboard/").status_code),
    "stats": run(lambda: client.get("/api/stats").status_code),
    "metrics": run(lambda: client.get("/metrics").status_code),
    "job page": run(lambda: client.get(f"/admin/jobs/job/{job.pk}/change/").status_code),
    "admin action": run(lambda: client.post("/admin/jobs/job/", {
        "action": "cancel_jobs", "_selected_action": [str(other.pk)]}).status_code),
    "api create": run(lambda: client.post(
        "/api/jobs", {"task": "noop"}, content_type="application/json").status_code),
    "worker": run(claim_and_run),
}
print(json.dumps(seen))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_list_dashboard_stats_and_metrics_read_from_the_replica_and_nothing_else_does():
    url = database_url()
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_REPLICA_URL": url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = run_python(PROBE, env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    for call in ("list", "dashboard", "stats", "metrics"):
        assert seen[call]["status"] == 200, (call, seen[call])
        assert "jobs_job" in seen[call]["replica"], (call, seen[call])
        assert "jobs_job" not in seen[call]["primary"], (call, seen[call])
    assert seen["job page"]["status"] == 200
    assert seen["admin action"]["status"] == 302
    assert seen["api create"]["status"] == 201
    assert seen["worker"]["status"] == "done"
    for call in ("job page", "admin action", "api create", "worker"):
        assert seen[call]["replica"] == [], (call, seen[call])
        assert "jobs_job" in seen[call]["primary"], (call, seen[call])


def test_the_router_sends_nothing_to_the_replica_outside_replica_reads(settings):
    from django.db import connections

    from jobs.models import Job
    from jobs.routers import ReadReplicaRouter, replica_reads

    settings.JOBS_READ_REPLICA = "replica"
    router = ReadReplicaRouter()
    from django.contrib.auth.models import User

    assert router.db_for_read(Job) is None
    assert router.db_for_write(Job) == "default"
    with replica_reads():
        assert router.db_for_read(Job) == "replica"
        assert router.db_for_read(User) is None  # other apps: not this router's to say
        assert router.db_for_write(Job) == "default"  # even for a row read from the replica
        connections["default"].in_atomic_block = True  # inside a transaction: the primary
        try:
            assert router.db_for_read(Job) is None
        finally:
            connections["default"].in_atomic_block = False
    assert router.allow_migrate("replica", "jobs") is False
    assert router.allow_migrate("default", "jobs") is None


def test_checks_name_a_missing_alias_and_a_missing_router(settings):
    from jobs.routers import check_replica_settings

    settings.JOBS_READ_REPLICA = "nowhere"
    assert [m.id for m in check_replica_settings()] == ["jobs.E002"]
    settings.JOBS_READ_REPLICA = "default"
    settings.DATABASE_ROUTERS = []
    assert [m.id for m in check_replica_settings()] == ["jobs.W002"]
    settings.DATABASE_ROUTERS = ["jobs.routers.ReadReplicaRouter"]
    assert check_replica_settings() == []
