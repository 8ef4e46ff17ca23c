"""The claim reads the head of the claim order from an index, whatever the backlog.

A plan that sorts every queued job costs time linear in the backlog on each
claim, so a queue that falls behind would slow down exactly when it must catch
up. These tests read the database's own plan for the claim's selection.
"""

from datetime import timedelta

import pytest
from django.db import connection, transaction
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
    # No sort of the backlog (SQLite: a temp b-tree; PostgreSQL: Sort; MySQL: filesort).
    assert "TEMP B-TREE" not in plan and "Sort" not in plan and "filesort" not in plan, plan
    assert len(list(due)) == 100


# MariaDB/MySQL have no partial indexes: the claim indexes hold every row and lead with
# status (migration 0011). Finished rows, inserted in one statement (MariaDB's sequence
# engine), must not draw the plans to another index or to a scan: a scaled-down million.
FINISHED = 20_000
LOAD_FINISHED = (
    "INSERT INTO jobs_job (id, task, status, queue, priority, attempts, max_attempts, "  # noqa: S608
    "created_at, updated_at, started_at, finished_at, worker_id, progress_message, "
    "has_dependents) "
    "SELECT UUID(), 'noop', 'done', CONCAT('q', MOD(seq, 4)), MOD(seq, 3), 1, 3, "
    "t, t, t, t, 'preload', '', 0 FROM (SELECT seq, UTC_TIMESTAMP(6) - INTERVAL 2 DAY "
    f"+ INTERVAL seq * 1000 MICROSECOND AS t FROM seq_1_to_{FINISHED}) AS s"
)


@pytest.fixture
def finished_rows(transactional_db: None) -> None:
    if connection.vendor != "mysql":
        pytest.skip("the claim indexes that lead with status are MariaDB's and MySQL's")
    with connection.cursor() as cursor:
        cursor.execute(LOAD_FINISHED)
        cursor.execute(f"ANALYZE TABLE {Job._meta.db_table}")  # as the server's own recalc would
        cursor.fetchall()


def test_mysql_claims_and_processing_counts_read_status_led_indexes(
    finished_rows: None, backlog: None
) -> None:
    for queues, index in ((None, "jobs_claim_any_my_idx"), (["q1"], "jobs_claim_my_idx")):
        due = Job.objects.claimable(queues=queues, now=timezone.now()).values("pk")[:100]
        plan = due.explain()
        assert f" {index} " in plan and "filesort" not in plan, plan
        with transaction.atomic():  # the claim's own statement: locking, skipping locked rows
            plan = due.select_for_update(skip_locked=True).explain()
            assert f" {index} " in plan and "filesort" not in plan, plan
        assert len(list(due)) == 100
    assert Job.objects.filter(status="done").count() == FINISHED
    # Flow control counts a queue's processing jobs: never through the finished ones.
    plan = Job.objects.filter(status="processing", queue="q1").values("pk").explain()
    assert "_status_my_idx" in plan or "jobs_claim_my_idx" in plan, plan
