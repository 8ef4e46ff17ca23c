"""Migration 0006 names the cause of the jobs that failed before it existed."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("jobs", "0005_idempotency_index_keys_only")]
AFTER = [("jobs", "0006_failure_cause")]


@pytest.mark.django_db(transaction=True)
def test_existing_failures_get_their_cause():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("jobs", "Job")
    rows = {
        "ValueError: bad input": "ValueError",
        "timed out after 5 seconds": "timed out",
        "worker lost": "worker lost",
    }
    ids = {old.objects.create(status="failed", error=error).pk: key for error, key in rows.items()}
    done = old.objects.create(status="done").pk
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("jobs", "Job")
    assert {pk: new.objects.get(pk=pk).error_class for pk in ids} == ids
    assert new.objects.get(pk=done).error_class is None
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
