"""The claim reads the head of the claim order from an index, whatever the backlog.

A plan that sorts every queued job costs time linear in the backlog on each
claim, so a queue that falls behind would slow down exactly when it must catch
up. These tests read the database's own plan for the claim's selection.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job

BACKLOG = 5000


@pytest.fixture
def backlog(db: None) -> None:
    now = timezone.now()
    lifecycle.enqueue_many(  # fell due over the last hour and a half, in four queues
        [
            {
                "task": "echo",
                "queue": f"q{i % 4}",
                "priority": i % 3,
                "run_after": now - timedelta(seconds=i),
            }
            for i in range(BACKLOG)
        ]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")  # as autovacuum would


@pytest.mark.parametrize("queues", [None, ["q1"]], ids=["any queue", "one queue"])
def test_claim_reads_an_index_in_claim_order(backlog: None, queues: list[str] | None) -> None:
    due = Job.objects.claimable(queues=queues, now=timezone.now()).values("pk")[:100]
    plan = due.explain()
    assert "jobs_claim" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # no sort of the backlog
    assert len(list(due)) == 100


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite planner statistics")
@pytest.mark.django_db
def test_every_job_index_has_sqlite_statistics() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
            [Job._meta.db_table],
        )
        indexes = {name for (name,) in cursor.fetchall()}
        cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = %s", [Job._meta.db_table])
        seeded = {name for (name,) in cursor.fetchall()}
    assert indexes <= seeded, f"no statistics for {sorted(indexes - seeded)}"
