import django.db.models.functions.comparison
from django.db import migrations, models

# SQLite plans without statistics until someone runs ANALYZE, and then assumes an
# equality on an index's first column matches about ten rows. For the claim that
# meant "status = 'queued'" through jobs_status_created_idx and a sort of every
# queued job: linear in the backlog, on every claim. These fixed statistics
# describe a large queue (1,000,000 jobs, 100,000 of them queued, five statuses,
# ten queues, fifty tasks, unique timestamps) and steer SQLite to the claim
# indexes, which give the claim order directly. A later ANALYZE replaces them
# with measured ones. A migration that rebuilds the table on SQLite drops them:
# it must seed them again (tests/test_claim_plans.py checks they are there).
# Each stat: the rows in the index, then the average number of rows sharing each
# prefix of its columns.
SQLITE_STATS = {
    None: "1000000",
    "sqlite_autoindex_jobs_job_1": "1000000 1",
    "jobs_idempotency_active": "1000 1",
    "jobs_claim_idx": "100000 10000 2000 1",
    "jobs_claim_any_idx": "100000 20000 1",
    "jobs_lease_idx": "1000 1",
    "jobs_status_created_idx": "1000000 200000 1",
    "jobs_created_idx": "1000000 1",
    "jobs_queue_created_idx": "1000000 100000 1",
    "jobs_task_created_idx": "1000000 20000 1",
    "jobs_queued_due_idx": "100000 1",
    "jobs_finished_idx": "900000 1",
    "jobs_retention_idx": "900000 300000 1",
}


def seed_sqlite_stats(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 if missing
        cursor.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'jobs_job'")
        cursor.executemany(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('jobs_job', %s, %s)",
            list(SQLITE_STATS.items()),
        )
        cursor.execute("ANALYZE sqlite_schema")  # reload them into this connection's planner


def drop_sqlite_stats(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'jobs_job'")


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_schedules_retention"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.OrderBy(models.F("priority"), descending=True),
                django.db.models.functions.comparison.Coalesce(
                    models.F("run_after"), models.F("created_at")
                ),
                condition=models.Q(("status", "queued")),
                name="jobs_claim_any_idx",
            ),
        ),
        migrations.RunPython(seed_sqlite_stats, drop_sqlite_stats),
    ]
